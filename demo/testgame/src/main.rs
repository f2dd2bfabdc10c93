//! The test game's binary: GoWorld's test_game in our idiom (see the library's docs).

fn main() -> std::process::ExitCode {
    oxworld_core::run(oxworld_demo_testgame::registry())
}
