//! Exit codes of every command: 0 ok; 1 what was checked is failing; 2 usage, configuration or
//! runtime error; 124 `watch` timed out.

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILING: i32 = 1;
pub const EXIT_ERROR: i32 = 2;
pub const EXIT_TIMEOUT: i32 = 124;
