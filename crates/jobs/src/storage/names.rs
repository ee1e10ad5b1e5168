//! How long names may be where the files are stored: one rule ([`NameLimits`]) for the files
//! API's paths and for every name a job may write ([`check_written`]), with each backend's
//! limits. A name that the storage cannot hold is refused before anything is done: a `PUT`
//! before its body is read, a job at submit (not after ffmpeg ran, when its upload fails).
//!
//! - **The data directory**: a file name (path component) of at most 255 bytes (`NAME_MAX`),
//!   and a path of at most 4095 bytes with the data directory's own path (`PATH_MAX` less the
//!   NUL byte): what the kernel refuses with `ENAMETOOLONG`.
//! - **A bucket**: a key of at most 1024 bytes of UTF-8, the key prefix of `STORAGE_URL`
//!   included (S3's limit); file names of at most 255 bytes as on a disk, since a worker
//!   stages each file in its data directory under the same relative path.

use std::path::Path;

use ffmpeg_core::footprint::{Footprint, Names};
use ffmpeg_core::pattern;
use ffmpeg_core::sandbox::ResolvedCommand;

/// Longest file name (one path component), in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest absolute path, in bytes, without the terminating NUL (`PATH_MAX` - 1).
pub const PATH_MAX: usize = 4095;
/// Longest S3 key, in bytes.
pub const KEY_MAX: usize = 1024;

/// The longest names a storage holds, in bytes. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameLimits {
    /// Longest one file name (path component).
    pub name_bytes: usize,
    /// Longest whole path (or key), [`NameLimits::base_bytes`] included.
    pub whole_bytes: usize,
    /// What every relative path is put under: the data directory's path and a `/`, or the key
    /// prefix and a `/` (0 without a prefix).
    pub base_bytes: usize,
    /// What a whole name is, for messages: `path`, `key`.
    pub whole: &'static str,
    /// What [`NameLimits::base_bytes`] counts, for messages: `the data directory`, `the prefix`.
    pub base: &'static str,
}

/// A name longer than a storage holds ([`NameLimits`]); the message says which limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameTooLong {
    /// One file name is too long.
    #[error("a file name is {bytes} bytes; at most {limit} are possible")]
    Name {
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The whole path or key is too long.
    #[error("the {whole} is {bytes} bytes with {base}; at most {limit} are possible")]
    Whole {
        /// `path`, `key`.
        whole: &'static str,
        /// `the data directory`, `the prefix`.
        base: &'static str,
        /// Its length, the base included.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

impl NameLimits {
    /// The limits of files in the data directory `root` (its canonical path).
    pub fn data_directory(root: &Path) -> NameLimits {
        NameLimits {
            name_bytes: NAME_MAX,
            whole_bytes: PATH_MAX,
            base_bytes: root.as_os_str().len() + 1,
            whole: "path",
            base: "the data directory",
        }
    }

    /// The limits of keys in a bucket, under `prefix` (no leading or trailing `/`; empty: the
    /// whole bucket).
    pub fn bucket(prefix: &str) -> NameLimits {
        NameLimits {
            name_bytes: NAME_MAX,
            whole_bytes: KEY_MAX,
            base_bytes: if prefix.is_empty() { 0 } else { prefix.len() + 1 },
            whole: "key",
            base: "the prefix",
        }
    }

    /// Checks every name of `path` (`/`-separated, relative) against
    /// [`NameLimits::name_bytes`].
    ///
    /// # Errors
    /// [`NameTooLong::Name`].
    pub fn check_names(&self, path: &str) -> Result<(), NameTooLong> {
        self.check_name_lengths(path.split('/').map(str::len))
    }

    /// Checks the whole of `path` (relative) against [`NameLimits::whole_bytes`].
    ///
    /// # Errors
    /// [`NameTooLong::Whole`].
    pub fn check_whole(&self, path: &str) -> Result<(), NameTooLong> {
        self.check_whole_length(path.len())
    }

    /// [`NameLimits::check_names`], then [`NameLimits::check_whole`].
    ///
    /// # Errors
    /// [`NameTooLong`].
    pub fn check(&self, path: &str) -> Result<(), NameTooLong> {
        self.check_names(path)?;
        self.check_whole(path)
    }

    fn check_name_lengths(&self, names: impl IntoIterator<Item = usize>) -> Result<(), NameTooLong> {
        match names.into_iter().find(|&bytes| bytes > self.name_bytes) {
            Some(bytes) => Err(NameTooLong::Name { bytes, limit: self.name_bytes }),
            None => Ok(()),
        }
    }

    fn check_whole_length(&self, relative_bytes: usize) -> Result<(), NameTooLong> {
        let bytes = self.base_bytes + relative_bytes;
        if bytes > self.whole_bytes {
            return Err(NameTooLong::Whole { whole: self.whole, base: self.base, bytes, limit: self.whole_bytes });
        }
        Ok(())
    }
}

/// A name a job would write that its storage cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument {position} `{argument}`: the job would write `{name}`, which the storage cannot hold: {problem}")]
pub struct WrittenNameTooLong {
    /// 1-based position of the argument that makes ffmpeg write it (an output, an option).
    pub position: usize,
    /// That argument as written.
    pub argument: String,
    /// The name, relative to the data directory or bucket prefix; a pattern (`out/seg%d.ts`)
    /// for the names a muxer numbers, measured at its longest ([`pattern::longest_len`]).
    pub name: String,
    /// Which limit it passes.
    pub problem: NameTooLong,
}

/// Checks every name `command` may leave in the storage ([`Footprint::written_by_argument`]:
/// outputs, the segments, playlists and keys their muxers derive, files options write, pass
/// logs) against `limits`. A pattern is measured at its longest ([`pattern::longest_len`]:
/// `%d` as 10 digits), in its directory and its name alike.
///
/// # Errors
/// [`WrittenNameTooLong`] for the first name that does not fit.
pub fn check_written(command: &ResolvedCommand, limits: &NameLimits) -> Result<(), WrittenNameTooLong> {
    for written in Footprint::written_by_argument(command) {
        let set = &written.set;
        let name = match set.names() {
            Names::Exact(name) => pattern_escaped(name),
            Names::Pattern(p) => p.clone(),
            // A tree is only ever read.
            _ => continue,
        };
        let dir = set.dir().to_string_lossy();
        let full = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        // An exact name's `%` was escaped above, so every component is measured as a pattern.
        let lengths: Vec<usize> = full.split('/').map(pattern::longest_len).collect();
        let checked = limits
            .check_name_lengths(lengths.iter().copied())
            .and_then(|()| limits.check_whole_length(lengths.iter().sum::<usize>() + lengths.len() - 1));
        if let Err(problem) = checked {
            let shown = match set.names() {
                Names::Exact(exact) if dir.is_empty() => exact.clone(),
                Names::Exact(exact) => format!("{dir}/{exact}"),
                _ => full,
            };
            return Err(WrittenNameTooLong {
                position: written.position,
                argument: written.argument,
                name: shown,
                problem,
            });
        }
    }
    Ok(())
}

/// `name` as a pattern that stands for exactly itself (`%` and `$` doubled).
fn pattern_escaped(name: &str) -> String {
    name.replace('%', "%%").replace('$', "$$")
}
