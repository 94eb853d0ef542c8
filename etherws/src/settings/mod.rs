//! Settings' value types, shared by the command line, the configuration file and the control
//! API.

pub(crate) mod profile;
pub(crate) mod values;
