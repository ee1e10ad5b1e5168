//! Stable rule ids, as [`SandboxError::rule`](crate::sandbox::SandboxError::rule) reports them:
//! which kind of rule a refused command broke. The reason names the option, filter or format.

/// The data directory itself cannot be used.
pub const DATA_DIRECTORY: &str = "data-directory";
/// An absolute path where a path relative to the data directory is needed.
pub const ABSOLUTE_PATH: &str = "absolute-path";
/// A path that leaves the data directory (`..`, a symlink pointing outside).
pub const PATH_ESCAPES: &str = "path-escapes";
/// A protocol or special name (`http:`, `pipe:`, `-`) instead of a plain file path.
pub const PROTOCOL: &str = "protocol";
/// Not a usable file (or directory) path: empty, a directory, a FIFO, a device.
pub const NOT_A_FILE: &str = "not-a-file";
/// A path the operator put off limits.
pub const RESERVED_PATH: &str = "reserved-path";
/// A glob pattern in an input path (`%*`), which would expand to unchecked names.
pub const GLOB_PATTERN: &str = "glob-pattern";
/// `..` in a value that is relative to the output's directory.
pub const PARENT_DIRECTORY: &str = "parent-directory";
/// An option the policy forbids.
pub const FORBIDDEN_OPTION: &str = "forbidden-option";
/// An allowed option with a value the policy forbids (`-safe 0`, `-pattern_type glob`).
pub const FORBIDDEN_VALUE: &str = "forbidden-value";
/// A demuxer or muxer the policy forbids.
pub const FORBIDDEN_FORMAT: &str = "forbidden-format";
/// A filter, or an option of a filter, that the policy forbids.
pub const FORBIDDEN_FILTER: &str = "forbidden-filter";
/// A filter graph that does not parse.
pub const FILTERGRAPH_SYNTAX: &str = "filtergraph-syntax";
/// An output (or a file an output's options write) that is one of the command's inputs.
pub const OUTPUT_OVERWRITES_INPUT: &str = "output-overwrites-input";
