//! `ffmpeg-core`: a model of ffmpeg's command line, a sandbox for the paths it names, and a
//! parser for its `-progress` output.
//!
//! This crate is pure: it knows nothing of jobs, HTTP, databases or async runtimes, spawns no
//! process, and does no I/O beyond what path containment needs (canonicalising and `stat`ing
//! the data directory and the existing part of a path: symlinks, and whether it is a file or a
//! directory); it never opens a file nor lists a directory. Other Rust programs can use it
//! alone.
//!
//! - [`command`]: split a command line (without the word `ffmpeg`) and parse it into ffmpeg's
//!   grammar: global options, inputs, outputs.
//! - [`sandbox`]: resolve every input and output against a data directory; only the sandbox
//!   can build a [`sandbox::ResolvedPath`].
//! - [`footprint`]: what a resolved command may read and write (directories and name
//!   patterns, ffmpeg's derived names included), and whether two commands conflict.
//! - [`output_banner`]: the `Output #N` listing on ffmpeg's stderr (each output's format and
//!   streams), read into typed outputs.
//! - [`stream`]: [`stream::StreamInfo`], the one description of a media stream, filled from
//!   ffmpeg's output listing or from ffprobe's JSON.
//! - [`pattern`]: file-name patterns (`%03d`, `$Number$`) as muxers expand them.
//! - [`progress`]: an incremental parser for `-progress pipe:1` output.
//! - [`capabilities`]: the option, codec, format and filter names the installed ffmpeg knows
//!   (read from its help output), and a check of a command against them.
//! - [`filtergraph`]: parse a filtergraph (`-vf`, `-af`, `-filter_complex`, `lavfi` inputs)
//!   into chains, filters, labels and unescaped options, and write it back escaped.
//! - [`duration`]: input durations from ffmpeg's stderr banner, the expected output duration,
//!   and percent complete.
//! - [`log`]: ffmpeg's `-loglevel` setting and the prefixes of its log lines (`[info] `,
//!   `[libx264 @ 0x...] `), and a router that keeps what the client's own level would show.
//!
//! # Features
//!
//! - `serde` (off by default): `serde::Serialize` for [`command::Command`] and its parts,
//!   [`progress::ProgressUpdate`], [`duration::ExpectedLength`], the [`filtergraph`] tree,
//!   [`capabilities::UnknownName`] and [`policy::RuleId`] (as its stable string); `Serialize`
//!   and `Deserialize` for [`output_banner::OutputBanner`] and [`stream::StreamInfo`] (a
//!   stored description reads back).
//!
//! # Stability
//!
//! Types that can grow are `#[non_exhaustive]`: every error and every enum whose set of cases
//! can grow (treatments, rule ids, path problems, input sources, name kinds, stream kinds), and
//! the structs with public fields that this crate builds for callers to read
//! ([`progress::ProgressUpdate`], [`capabilities::UnknownName`], the policy's
//! [`policy::FileUse`] and [`policy::FilterOptionRule`], [`output_banner::OutputBanner`],
//! [`stream::StreamInfo`]). Enums that mirror a closed grammar
//! ([`progress::ProgressState`], [`filtergraph::FilterArg`]) and plain values that callers
//! build ([`duration::ExpectedLength`], [`capabilities::CapabilityOutputs`], the
//! [`filtergraph`] tree) are exhaustive, so that matching and building them needs no wildcard.
//!
//! ```
//! use ffmpeg_core::command::Command;
//!
//! let cmd = Command::parse("-i in.mp4 -c:v libx264 -crf 23 out.mp4")?;
//! assert_eq!(cmd.inputs()[0].url(), "in.mp4");
//! assert_eq!(cmd.outputs()[0].url(), "out.mp4");
//! # Ok::<(), ffmpeg_core::command::CommandError>(())
//! ```

pub mod capabilities;
pub mod command;
pub mod duration;
pub mod filtergraph;
pub mod footprint;
pub mod log;
pub mod output_banner;
pub mod pattern;
pub mod policy;
pub mod progress;
pub mod sandbox;
pub mod stream;

/// The README's example, run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;
