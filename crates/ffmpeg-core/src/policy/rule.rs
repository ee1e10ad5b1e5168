//! Stable rule ids, as [`SandboxError::rule`](crate::sandbox::SandboxError::rule) reports them:
//! which kind of rule a refused command broke. The reason names the option, filter or format.

use std::fmt;

/// The kind of rule a refused command broke. [`RuleId::as_str`] is its stable id
/// (`forbidden-option`, ...), as API responses and `docs/security.md` show it; new ids may be
/// added, existing ones do not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RuleId {
    /// The data directory itself cannot be used.
    DataDirectory,
    /// An absolute path where a path relative to the data directory is needed.
    AbsolutePath,
    /// A path that leaves the data directory (`..`, a symlink pointing outside).
    PathEscapes,
    /// A protocol or special name (`http:`, `pipe:`, `-`) instead of a plain file path.
    Protocol,
    /// Not a usable file (or directory) path: empty, a directory, a FIFO, a device.
    NotAFile,
    /// A path the operator put off limits.
    ReservedPath,
    /// A glob pattern in an input path (`%*`), which would expand to unchecked names.
    GlobPattern,
    /// `..` in a value that is relative to the output's directory.
    ParentDirectory,
    /// A path that leads through a symlink to a name that is not valid UTF-8: ffmpeg gets
    /// paths as text, and a lossy copy would name another file.
    NonUtf8Path,
    /// A file the job writes (an output, a `-segment_list`) that is a symbolic link inside the
    /// data directory: ffmpeg would write the file it leads to, in the format its name says.
    SymbolicLink,
    /// A path holding a control character (a newline, an escape): it would break a playlist
    /// that lists it, a log line, a terminal that shows it, and a bucket key.
    ControlCharacter,
    /// An option the policy forbids.
    ForbiddenOption,
    /// An allowed option with a value the policy forbids (`-safe 0`, `-pattern_type glob_sequence`).
    ForbiddenValue,
    /// A value ffmpeg itself refuses before it starts (an unknown `-loglevel` level): the job
    /// could only fail.
    InvalidValue,
    /// A demuxer or muxer the policy forbids.
    ForbiddenFormat,
    /// A filter, or an option of a filter, that the policy forbids.
    ForbiddenFilter,
    /// A filter graph that does not parse.
    FiltergraphSyntax,
    /// An output (or a file an output's options write) that is one of the command's inputs.
    OutputOverwritesInput,
}

impl RuleId {
    /// Every rule id.
    pub const ALL: &[RuleId] = &[
        RuleId::DataDirectory,
        RuleId::AbsolutePath,
        RuleId::PathEscapes,
        RuleId::Protocol,
        RuleId::NotAFile,
        RuleId::ReservedPath,
        RuleId::GlobPattern,
        RuleId::ParentDirectory,
        RuleId::NonUtf8Path,
        RuleId::SymbolicLink,
        RuleId::ControlCharacter,
        RuleId::ForbiddenOption,
        RuleId::ForbiddenValue,
        RuleId::InvalidValue,
        RuleId::ForbiddenFormat,
        RuleId::ForbiddenFilter,
        RuleId::FiltergraphSyntax,
        RuleId::OutputOverwritesInput,
    ];

    /// The stable id, e.g. `"path-escapes"`.
    ///
    /// ```
    /// use ffmpeg_core::policy::RuleId;
    ///
    /// assert_eq!(RuleId::ForbiddenOption.as_str(), "forbidden-option");
    /// assert_eq!(RuleId::PathEscapes.to_string(), "path-escapes");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleId::DataDirectory => "data-directory",
            RuleId::AbsolutePath => "absolute-path",
            RuleId::PathEscapes => "path-escapes",
            RuleId::Protocol => "protocol",
            RuleId::NotAFile => "not-a-file",
            RuleId::ReservedPath => "reserved-path",
            RuleId::GlobPattern => "glob-pattern",
            RuleId::ParentDirectory => "parent-directory",
            RuleId::NonUtf8Path => "non-utf8-path",
            RuleId::SymbolicLink => "symbolic-link",
            RuleId::ControlCharacter => "control-character",
            RuleId::ForbiddenOption => "forbidden-option",
            RuleId::ForbiddenValue => "forbidden-value",
            RuleId::InvalidValue => "invalid-value",
            RuleId::ForbiddenFormat => "forbidden-format",
            RuleId::ForbiddenFilter => "forbidden-filter",
            RuleId::FiltergraphSyntax => "filtergraph-syntax",
            RuleId::OutputOverwritesInput => "output-overwrites-input",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for RuleId {
    /// As its stable id, a string.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RuleId;

    #[test]
    fn ids_are_distinct_kebab_case() {
        let mut ids: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
        assert!(
            ids.iter()
                .all(|id| !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit()))
        );
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RuleId::ALL.len());
    }
}
