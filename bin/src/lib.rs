//! Glue shared by the `oxworld` CLI and the process binaries: process control (`launcher`),
//! the supervisor behind `start --supervise` (`supervisor`), and real clusters for integration
//! tests (`testkit`).

pub mod import_config;
pub mod launcher;
pub mod supervisor;
pub mod testkit;
