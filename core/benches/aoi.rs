//! AOI step benchmark (placeholder until the AOI module lands).

fn main() {
    divan::main();
}
