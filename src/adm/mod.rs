//! `tunvs adm`: the `ipvsadm` command line (spec §4).
//!
//! [`parse`] turns argv into a [`Command`], [`run`] executes one invocation
//! against an [`api::Ipvs`] and returns what to print, [`format`] holds the
//! exact listing formats, [`parse_rules`]/[`apply`] serve the daemon's
//! `--config` rules file.
pub mod api;
pub mod exec;
pub mod format;
pub mod names;
pub mod parse;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use exec::{apply, parse_rules, run, run_with_names, AdmOutput};
pub use format::{ListFormat, VERSION_LINE};
pub use names::Names;
pub use parse::{parse, Command, DaemonOpts, DaemonState, ListOpts, ListWhat, ParseError};
