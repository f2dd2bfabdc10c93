//! The arena demo's game binary (see the library's docs).

fn main() -> std::process::ExitCode {
    oxworld_core::run(oxworld_demo_arena::registry())
}
