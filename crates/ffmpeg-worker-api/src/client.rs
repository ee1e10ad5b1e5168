//! The `ffmpeg-worker` command's client subcommands, defined once for the server binary and
//! the client program.

/// One subcommand of the `ffmpeg-worker` command that the `ffmpeg-worker-client` program runs
/// ([`CLIENT_SUBCOMMANDS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubcommand {
    /// Its name: `ffmpeg-worker <name> ...`.
    pub name: &'static str,
    /// Its one-line help, as `ffmpeg-worker --help` and `ffmpeg-worker-client --help` show it.
    pub about: &'static str,
}

/// The client subcommands, defined once: the server binary hands each of them on to the
/// `ffmpeg-worker-client` program (which implements them) and lists them in its `--help`; the
/// client's own definitions are checked against this list by its tests.
pub const CLIENT_SUBCOMMANDS: &[ClientSubcommand] = &[
    ClientSubcommand { name: "submit", about: "Submit a job: `submit [--wait] -- -i in.mp4 out.webm`" },
    ClientSubcommand { name: "status", about: "Show a job: status, progress, outputs or error" },
    ClientSubcommand { name: "list", about: "List jobs, oldest first" },
    ClientSubcommand { name: "cancel", about: "Cancel a queued or running job" },
    ClientSubcommand { name: "delete", about: "Delete a finished job's record (its output files stay)" },
    ClientSubcommand { name: "logs", about: "Print a job's log (the tail of ffmpeg's stderr)" },
    ClientSubcommand {
        name: "wait",
        about: "Wait for a job to finish, showing its progress; exit 0 if it completed, 1 if not",
    },
    ClientSubcommand {
        name: "put",
        about: "Upload a local file to the server's data directory (REMOTE defaults to its file name)",
    },
    ClientSubcommand {
        name: "get",
        about: "Download a file from the server's data directory (LOCAL defaults to its file name)",
    },
    ClientSubcommand {
        name: "ls",
        about: "List files whose path starts with PREFIX (recursive; all files without PREFIX)",
    },
    ClientSubcommand { name: "rm", about: "Delete a file (a directory with --recursive)" },
    ClientSubcommand {
        name: "probe",
        about: "Describe a media file of the server's data directory (ffprobe on the server)",
    },
];
