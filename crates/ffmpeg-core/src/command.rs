//! ffmpeg's command-line grammar:
//! `[global options] {[input options] -i INPUT}... {[output options] OUTPUT}...`
//!
//! The grammar follows `fftools/ffmpeg_opt.c` and `fftools/cmdutils.c` (ffmpeg 5.1+):
//!
//! - An option takes a value unless it is one of ffmpeg's value-less flags (`-y`, `-an`,
//!   `-shortest`, ... and the `-no<flag>` forms of boolean ones). Options ffmpeg itself does
//!   not know are codec, format or filter private options (AVOptions: `-crf 23`,
//!   `-movflags +faststart`) and always take a value.
//! - A stream specifier stays with its option: `-c:v:0` is the option `c` with specifier `v:0`.
//! - A value may begin with `-` (`-itsoffset -2`).
//! - Global options (`-y`, `-filter_complex`, `-loglevel`, ...) apply wherever they appear.
//! - Per-file options apply to the next input (`-i URL`) or output (any positional argument).
//! - Every positional argument that is not an option value is an output URL.


use std::fmt;

/// A parsed ffmpeg command line.
///
/// Built by [`Command::parse`] or [`Command::from_args`]; never empty of inputs or outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Command {
    global_options: Vec<Opt>,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    /// Number of arguments after splitting.
    arg_count: usize,
}

/// One option as written on the command line, with its value if it takes one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Opt {
    /// The option's name without the leading `-` and without the stream specifier: `c` for `-c:v:0`.
    name: String,
    /// The stream specifier after the first `:`, if any: `v:0` for `-c:v:0`.
    stream_specifier: Option<String>,
    /// The value, for options that take one.
    value: Option<String>,
    /// 1-based position of the option's own argument in the split command line.
    position: usize,
}

/// An input: its options and the URL given to `-i`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Input {
    options: Vec<Opt>,
    url: String,
    /// 1-based position of the URL argument (the one after `-i`).
    position: usize,
}

/// An output: its options and its URL (a positional argument).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Output {
    options: Vec<Opt>,
    url: String,
    /// 1-based position of the URL argument.
    position: usize,
}

/// Why a command line could not be parsed. Positions are 1-based indexes into the split
/// argument list, as shown in messages: "argument 4 `-c:v`: ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The command line could not be split into arguments (unbalanced quotes or a trailing `\`).
    #[error("command line cannot be split into arguments: {reason}")]
    Split {
        /// What shell-words reported, e.g. "missing closing quote".
        reason: String,
    },
    /// The command line has no arguments at all.
    #[error("command is empty")]
    Empty,
    /// An option that takes a value is the last argument.
    #[error("argument {position} `{argument}`: option needs a value")]
    MissingValue {
        /// 1-based position of the option.
        position: usize,
        /// The option as written, e.g. `-c:v`.
        argument: String,
    },
    /// No `-i` input.
    #[error("command has no input (`-i URL`)")]
    NoInput,
    /// No output URL.
    #[error("command has no output")]
    NoOutput,
    /// Per-file options after the last output apply to nothing (ffmpeg ignores them with a warning).
    #[error("argument {position} `{argument}`: option after the last output applies to no output")]
    TrailingOption {
        /// 1-based position of the first trailing option.
        position: usize,
        /// The option as written.
        argument: String,
    },
    /// An argument is not a usable option name (`--`, or `-` followed by nothing valid).
    #[error("argument {position} `{argument}`: not a valid option")]
    InvalidOption {
        /// 1-based position of the argument.
        position: usize,
        /// The argument as written.
        argument: String,
    },
}

impl Command {
    /// Splits `line` with POSIX shell quoting rules (no expansion) and parses it.
    ///
    /// # Errors
    /// [`CommandError::Split`] for unbalanced quotes; otherwise as [`Command::from_args`].
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let args = shell_words::split(line).map_err(|e| CommandError::Split { reason: e.to_string() })?;
        Command::from_args(args)
    }

    /// Parses an already split argument list (without the program name).
    ///
    /// # Errors
    /// [`CommandError::Empty`], [`CommandError::MissingValue`], [`CommandError::NoInput`],
    /// [`CommandError::NoOutput`], [`CommandError::TrailingOption`], [`CommandError::InvalidOption`].
    pub fn from_args<I, S>(args: I) -> Result<Command, CommandError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let _args: Vec<String> = args.into_iter().map(Into::into).collect();
        todo!("helper implements the grammar")
    }

    /// Global options, in order.
    pub fn global_options(&self) -> &[Opt] {
        &self.global_options
    }

    /// Inputs, in order (input file index 0, 1, ... as ffmpeg numbers them).
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    /// Outputs, in order (output file index 0, 1, ...).
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// The command as an argument list, in a canonical order: global options, then each input's
    /// options and `-i URL`, then each output's options and URL.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(self.arg_count);
        for o in &self.global_options {
            o.push_args(&mut args);
        }
        for input in &self.inputs {
            for o in &input.options {
                o.push_args(&mut args);
            }
            args.push("-i".to_owned());
            args.push(input.url.clone());
        }
        for output in &self.outputs {
            for o in &output.options {
                o.push_args(&mut args);
            }
            args.push(output.url.clone());
        }
        args
    }
}

impl Opt {
    /// The option's name without `-` and stream specifier: `c` for `-c:v:0`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The stream specifier, if any: `v:0` for `-c:v:0`.
    pub fn stream_specifier(&self) -> Option<&str> {
        self.stream_specifier.as_deref()
    }
    /// The value, for options that take one.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
    /// 1-based position of the option's argument in the split command line.
    pub fn position(&self) -> usize {
        self.position
    }
    /// The option as written: `-c:v:0`.
    pub fn flag(&self) -> String {
        match &self.stream_specifier {
            Some(spec) => format!("-{}:{spec}", self.name),
            None => format!("-{}", self.name),
        }
    }
    fn push_args(&self, args: &mut Vec<String>) {
        args.push(self.flag());
        if let Some(v) = &self.value {
            args.push(v.clone());
        }
    }
}

impl fmt::Display for Opt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} {v}", self.flag()),
            None => f.write_str(&self.flag()),
        }
    }
}

/// Lookup of an option in a list by name, the last occurrence winning as in ffmpeg.
fn last_option<'a>(options: &'a [Opt], name: &str) -> Option<&'a Opt> {
    options.iter().rev().find(|o| o.name == name)
}

impl Input {
    /// The input's options, in order.
    pub fn options(&self) -> &[Opt] {
        &self.options
    }
    /// The URL given to `-i`, as written.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// 1-based position of the URL argument.
    pub fn position(&self) -> usize {
        self.position
    }
    /// The last option named `name` (without `-`, any stream specifier), as ffmpeg applies it.
    pub fn option(&self, name: &str) -> Option<&Opt> {
        last_option(&self.options, name)
    }
}

impl Output {
    /// The output's options, in order.
    pub fn options(&self) -> &[Opt] {
        &self.options
    }
    /// The output URL, as written.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// 1-based position of the URL argument.
    pub fn position(&self) -> usize {
        self.position
    }
    /// The last option named `name` (without `-`, any stream specifier), as ffmpeg applies it.
    pub fn option(&self, name: &str) -> Option<&Opt> {
        last_option(&self.options, name)
    }
}
