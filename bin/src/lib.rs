//! Glue shared by the `oxworld` CLI and the process binaries: process control (`launcher`).

pub mod launcher;
