//! `tunvs adm`: the `ipvsadm` command line (spec §4).
pub mod api;
pub mod format;
pub mod names;
pub mod parse;
