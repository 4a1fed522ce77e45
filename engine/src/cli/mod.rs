//! Command-line commands.
