//! The test game without its `Beacon` type: a binary whose entity types changed (tests only).

fn main() -> std::process::ExitCode {
    let mut reg = oxworld_core::Registry::new();
    oxworld_demo_testgame::register_game(&mut reg);
    oxworld_core::run(reg)
}
