//! What the operating system refuses when it starts ffmpeg, measured before a job is queued:
//! a command that could never start is refused at submit (a 422), not accepted and failed
//! later with "Argument list too long" or "File name too long".
//!
//! The limits are Linux's (the kernel's `fs/exec.c` and `include/uapi/linux/limits.h`):
//!
//! - **All arguments together**: `execve(2)` copies every argument and environment string with
//!   its NUL byte, and the program's file name, onto the new stack, and needs one pointer per
//!   argument and environment string. Together they may take a quarter of the stack size
//!   limit (`RLIMIT_STACK`, 8 MiB by default, so 2 MiB), at most 6 MiB, at least 128 KiB
//!   (`bprm_stack_limits()`). ffmpeg runs with an empty environment (under a memory limit,
//!   one variable, which the runner counts as an argument), so the arguments take it all.
//! - **One argument**: at most 128 KiB with its NUL byte (`MAX_ARG_STRLEN`).
//! - **One file name** (a path component): at most 255 bytes (`NAME_MAX`).
//! - **One path**: at most 4095 bytes (`PATH_MAX`, 4096 with the NUL byte). The data
//!   directory's own path counts, as ffmpeg gets absolute paths.

use std::path::Path;

use ffmpeg_core::policy::Naming;
use ffmpeg_core::sandbox::{InputSource, OutputTarget, ResolvedCommand, ResolvedPath};

/// `MAX_ARG_STRLEN`: the longest one argument may be, NUL byte included (32 pages of 4 KiB).
pub const MAX_ARGUMENT_BYTES: usize = 128 * 1024;
/// `NAME_MAX`: the longest one file name (path component) may be, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// `PATH_MAX` less the NUL byte: the longest a path may be, in bytes.
pub const MAX_PATH_BYTES: usize = 4095;
/// What ffmpeg adds to a `-passlogfile` prefix at most: `PREFIX-0.log.mbtree.temp` (libx264
/// writes its macroblock-tree statistics beside the log and renames them from `.temp`).
const PREFIX_SUFFIX_BYTES: usize = "-0.log.mbtree.temp".len();
/// Bytes of one pointer in the argument and environment arrays.
const POINTER_BYTES: usize = std::mem::size_of::<usize>();

/// The limits of [`ExecLimits::check_command`], in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Arguments, environment, their pointers and the program's file name together.
    pub total_bytes: usize,
    /// One argument with its NUL byte ([`MAX_ARGUMENT_BYTES`]).
    pub argument_bytes: usize,
    /// One path component ([`MAX_NAME_BYTES`]).
    pub name_bytes: usize,
    /// One path without its NUL byte ([`MAX_PATH_BYTES`]).
    pub path_bytes: usize,
}

impl Default for ExecLimits {
    /// Linux's limits with the default 8 MiB stack limit: 2 MiB of arguments.
    fn default() -> Self {
        ExecLimits::with_stack_limit(Some(8 * 1024 * 1024))
    }
}

impl ExecLimits {
    /// The limits for a process whose stack size limit (`RLIMIT_STACK`, soft) is `stack_bytes`
    /// (`None`: unlimited): a quarter of it for the arguments, at most 6 MiB, at least 128 KiB.
    pub fn with_stack_limit(stack_bytes: Option<u64>) -> ExecLimits {
        const STK_LIM: u64 = 8 * 1024 * 1024;
        const ARG_MAX: u64 = 32 * 4096;
        let quarter = stack_bytes.map_or(u64::MAX, |s| s / 4);
        let total = (STK_LIM / 4 * 3).min(quarter).max(ARG_MAX);
        ExecLimits {
            total_bytes: usize::try_from(total).unwrap_or(usize::MAX),
            argument_bytes: MAX_ARGUMENT_BYTES,
            name_bytes: MAX_NAME_BYTES,
            path_bytes: MAX_PATH_BYTES,
        }
    }

    /// The limits children of this process get: they inherit its stack size limit. Reads
    /// `getrlimit(RLIMIT_STACK)` (no I/O).
    pub fn of_this_process() -> ExecLimits {
        #[cfg(target_os = "linux")]
        {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Stack);
            ExecLimits::with_stack_limit(limit.current)
        }
        #[cfg(not(target_os = "linux"))]
        ExecLimits::default()
    }

    /// The bytes `execve(program, args, [])` needs against [`ExecLimits::total_bytes`]:
    /// `program` twice (as the file name and as `argv[0]`) and every argument, each with its
    /// NUL byte, and one pointer per argument (`argv[0]` included). A `program` without a `/`
    /// is searched in the C library's default path; `/usr/bin/` is counted for that.
    pub fn needed_bytes(program: &Path, args: &[String]) -> usize {
        let program_bytes = program.as_os_str().len() + 1;
        let file_name_bytes = program_bytes + if program.components().count() > 1 { 0 } else { "/usr/bin/".len() };
        let strings: usize = args.iter().map(|a| a.len() + 1).sum();
        file_name_bytes + program_bytes + strings + (args.len() + 1) * POINTER_BYTES
    }

    /// Checks that `program` can be started with `args` (the full list built from `command`)
    /// and an empty environment, and that every path of `command` can be opened: the paths
    /// first ([`ExecLimits::check_paths`]), then the arguments ([`ExecLimits::check_args`]).
    ///
    /// # Errors
    /// As [`ExecLimits::check_paths`] and [`ExecLimits::check_args`].
    pub fn check_command(
        &self,
        program: &Path,
        args: &[String],
        command: &ResolvedCommand,
        data_dir: &Path,
    ) -> Result<(), ExecLimitError> {
        self.check_paths(command)?;
        let per_input = args.windows(2).find(|w| w[0] == "-format_whitelist").map_or(0, |w| {
            ["-protocol_whitelist", "file", &w[0], &w[1]].iter().map(|a| a.len() + 1 + POINTER_BYTES).sum()
        });
        self.check_args_of(program, args, data_dir, (command.inputs().len(), per_input))
    }

    /// Checks that `program` can be started with `args` and an empty environment.
    ///
    /// # Errors
    /// [`ExecLimitError::CommandTooLong`] when all together pass [`ExecLimits::total_bytes`];
    /// [`ExecLimitError::ArgumentTooLong`] when one argument passes
    /// [`ExecLimits::argument_bytes`] (`excerpt` is its start, with `data_dir` made relative).
    pub fn check_args(&self, program: &Path, args: &[String], data_dir: &Path) -> Result<(), ExecLimitError> {
        self.check_args_of(program, args, data_dir, (0, 0))
    }

    /// [`ExecLimits::check_args`] for a command with `inputs.0` inputs, before each of which
    /// `inputs.1` bytes were added (for the error message).
    fn check_args_of(
        &self,
        program: &Path,
        args: &[String],
        data_dir: &Path,
        (inputs, per_input): (usize, usize),
    ) -> Result<(), ExecLimitError> {
        if let Some(long) = args.iter().find(|a| a.len() + 1 > self.argument_bytes) {
            let shown = crate::runner::relative_paths(long, data_dir);
            let excerpt: String = shown.chars().take(40).collect();
            return Err(ExecLimitError::ArgumentTooLong { bytes: long.len(), limit: self.argument_bytes - 1, excerpt });
        }
        let bytes = ExecLimits::needed_bytes(program, args);
        if bytes > self.total_bytes {
            return Err(ExecLimitError::CommandTooLong { bytes, limit: self.total_bytes, inputs, per_input });
        }
        Ok(())
    }

    /// Checks every path of `command` (inputs, outputs, files named in options and filters)
    /// against [`ExecLimits::name_bytes`] and [`ExecLimits::path_bytes`]. A prefix
    /// (`-passlogfile`) is counted with the longest suffix ffmpeg adds to it.
    ///
    /// # Errors
    /// [`ExecLimitError::NameTooLong`] or [`ExecLimitError::PathTooLong`], naming the path
    /// relative to the data directory.
    pub fn check_paths(&self, command: &ResolvedCommand) -> Result<(), ExecLimitError> {
        let inputs = command.inputs().iter().filter_map(|i| match i {
            InputSource::File(p) => Some((p, 0)),
            _ => None,
        });
        let outputs = command.outputs().iter().filter_map(|o| match o {
            OutputTarget::File(p) => Some((p, 0)),
            _ => None,
        });
        let files = command.option_files().iter().map(|f| {
            let suffix = match f.file_use().naming {
                Naming::Prefix => PREFIX_SUFFIX_BYTES,
                Naming::Suffixed(suffixes) => suffixes.iter().map(|s| s.len()).max().unwrap_or(0),
                _ => 0,
            };
            (f.path(), suffix)
        });
        inputs.chain(outputs).chain(files).try_for_each(|(path, suffix)| self.check_path(path, suffix))
    }

    fn check_path(&self, path: &ResolvedPath, suffix: usize) -> Result<(), ExecLimitError> {
        let shown = || path.relative().display().to_string();
        let last = path.as_path().components().count().saturating_sub(1);
        for (i, component) in path.as_path().components().enumerate() {
            let bytes = component.as_os_str().len() + if i == last { suffix } else { 0 };
            if bytes > self.name_bytes {
                return Err(ExecLimitError::NameTooLong { path: shown(), bytes, limit: self.name_bytes });
            }
        }
        let bytes = path.as_path().as_os_str().len() + suffix;
        if bytes > self.path_bytes {
            return Err(ExecLimitError::PathTooLong { path: shown(), bytes, limit: self.path_bytes });
        }
        Ok(())
    }
}

/// What the operating system would refuse when starting ffmpeg. Messages say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecLimitError {
    /// All arguments together are too long (`E2BIG`). Each input adds its `-format_whitelist`.
    #[error(
        "the command line ffmpeg would get is {bytes} bytes (with what the server adds: the list of allowed input \
         formats, about {per_input} bytes, before each of the {inputs} inputs); the operating system starts a \
         program with at most {limit} bytes of arguments: use fewer inputs or shorter arguments"
    )]
    CommandTooLong {
        /// Bytes needed, counted as the kernel does.
        bytes: usize,
        /// The limit.
        limit: usize,
        /// The number of inputs.
        inputs: usize,
        /// Bytes the server adds before each input.
        per_input: usize,
    },
    /// One argument is longer than the operating system allows (`E2BIG`).
    #[error(
        "an argument of {bytes} bytes (starting `{excerpt}`) is longer than the {limit} bytes the operating system \
         allows in one argument"
    )]
    ArgumentTooLong {
        /// Its length in bytes.
        bytes: usize,
        /// The limit, without the NUL byte.
        limit: usize,
        /// Its first 40 characters, data-directory paths made relative.
        excerpt: String,
    },
    /// A file or directory name is longer than the file system allows (`ENAMETOOLONG`).
    #[error("`{path}`: a file name of {bytes} bytes; file names are at most {limit} bytes")]
    NameTooLong {
        /// The path, relative to the data directory.
        path: String,
        /// The length of the longest name in it (with the suffix ffmpeg adds to a prefix).
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A path is longer than the operating system allows (`ENAMETOOLONG`).
    #[error("`{path}`: {bytes} bytes with the data directory's own path; paths are at most {limit} bytes")]
    PathTooLong {
        /// The path, relative to the data directory.
        path: String,
        /// Its absolute length in bytes (with the suffix ffmpeg adds to a prefix).
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}
