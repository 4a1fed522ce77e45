//! Helpers of the reliability and security tests (`fault_*`, `security_*`, `names_*`,
//! `config_*`): running `pgwarp` as a process and reading what it printed, and the fault
//! injectors the scenarios share.
#![allow(dead_code)]

pub mod faults;
pub mod flow;
pub mod load;
pub mod names;
pub mod process;
pub mod scenario;
pub mod tls;
