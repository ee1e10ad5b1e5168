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
//!
//! Which options take a value and which are global comes from ffmpeg's own option table, kept
//! in the private `options` submodule with its sources and how each entry was checked.
//!
//! ```
//! use ffmpeg_core::command::Command;
//!
//! let cmd = Command::parse("-y -ss 5 -i in.mp4 -filter_complex '[0:v]scale=640:-2' -an out.mp4")?;
//! let globals: Vec<String> = cmd.global_options().iter().map(ToString::to_string).collect();
//! assert_eq!(globals, ["-y", "-filter_complex [0:v]scale=640:-2"]);
//! assert_eq!(cmd.inputs()[0].option("ss").and_then(|o| o.value()), Some("5"));
//! assert_eq!(cmd.outputs()[0].options()[0].flag(), "-an");
//! # Ok::<(), ffmpeg_core::command::CommandError>(())
//! ```

mod options;

use std::fmt;

use options::{Kind, Scope};

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
    #[error("command line cannot be split into arguments: {source}")]
    Split {
        /// What shell-words reported ("missing closing quote").
        #[source]
        source: shell_words::ParseError,
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
    /// An argument contains a NUL byte, which no process argument can carry.
    #[error("argument {position} `{argument}`: contains a NUL byte")]
    NulByte {
        /// 1-based position of the argument.
        position: usize,
        /// The argument as written (the NUL shown as `\0`).
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

impl CommandError {
    /// The offending argument: its 1-based position in the split command line and its text,
    /// for the errors that name one ([`CommandError::MissingValue`],
    /// [`CommandError::TrailingOption`], [`CommandError::NulByte`],
    /// [`CommandError::InvalidOption`]); `None` otherwise.
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    ///
    /// let e = Command::parse("-i in.mp4 -/vf graph.txt out.mp4").unwrap_err();
    /// assert_eq!(e.argument(), Some((3, "-/vf")));
    /// assert_eq!(Command::parse("").unwrap_err().argument(), None);
    /// ```
    pub fn argument(&self) -> Option<(usize, &str)> {
        match self {
            CommandError::MissingValue { position, argument }
            | CommandError::TrailingOption { position, argument }
            | CommandError::InvalidOption { position, argument }
            | CommandError::NulByte { position, argument } => Some((*position, argument)),
            CommandError::Split { .. } | CommandError::Empty | CommandError::NoInput | CommandError::NoOutput => None,
        }
    }
}

impl Command {
    /// Splits `line` with POSIX shell quoting rules (no expansion) and parses it.
    ///
    /// # Errors
    /// [`CommandError::Split`] for unbalanced quotes; otherwise as [`Command::from_args`].
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let args = shell_words::split(line).map_err(|source| CommandError::Split { source })?;
        Command::from_args(args)
    }

    /// Parses an already split argument list (without the program name).
    ///
    /// Splitting follows `split_commandline()` in `fftools/cmdutils.c` (ffmpeg 5.1): `-i`
    /// takes the next argument as an input URL; an option takes the next argument as its value
    /// unless it is value-less ([`Command::is_value_less`]); `OPT_EXIT` options (`-h`,
    /// `-version`, ...) take the next argument if there is one; every other argument (including
    /// a bare `-`) is an output URL. Global options ([`Command::is_global_option`]) are
    /// collected wherever they appear; the others attach to the next input or output.
    ///
    /// Stricter than ffmpeg: `--` (ffmpeg: "next argument is an output URL"), an empty stream
    /// specifier (`-c:`), `-i:v` and names that are neither in ffmpeg's table nor
    /// shaped like an option name (`-:v`, `-2`) are [`CommandError::InvalidOption`]; options
    /// after the last output, which ffmpeg ignores with a warning, are
    /// [`CommandError::TrailingOption`].
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    ///
    /// let cmd = Command::from_args(["-itsoffset", "-2", "-i", "in.mp4", "-f", "null", "-"])?;
    /// assert_eq!(cmd.inputs()[0].option("itsoffset").and_then(|o| o.value()), Some("-2"));
    /// assert_eq!(cmd.outputs()[0].url(), "-");
    /// assert_eq!(cmd.outputs()[0].format(), Some("null"));
    /// assert_eq!(cmd.arg_count(), 7);
    /// # Ok::<(), ffmpeg_core::command::CommandError>(())
    /// ```
    ///
    /// # Errors
    /// [`CommandError::NulByte`], [`CommandError::Empty`], [`CommandError::MissingValue`], [`CommandError::NoInput`],
    /// [`CommandError::NoOutput`], [`CommandError::TrailingOption`], [`CommandError::InvalidOption`].
    pub fn from_args<I, S>(args: I) -> Result<Command, CommandError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        if let Some((i, arg)) = args.iter().enumerate().find(|(_, a)| a.contains('\0')) {
            return Err(CommandError::NulByte { position: i + 1, argument: arg.replace('\0', "\\0") });
        }
        Parser::default().run(args)
    }

    /// Does the option `name` (without `-` and stream specifier, as [`Opt::name`]) stand alone,
    /// without a value? True for ffmpeg's boolean and other argument-less options (`y`, `an`,
    /// `shortest`, `copyts`, `stats`, `report`, ...) and for the `no` form of a boolean one
    /// (`nostdin`, `nostats`, `noautorotate`). False for everything else, including names
    /// ffmpeg does not define itself (codec, format and filter options such as `crf`), which
    /// always take a value, and the `OPT_EXIT` options (`h`, `version`, ...), which take the
    /// next argument if there is one.
    ///
    /// Note `autorotate` and `autoscale`: boolean, but declared with `HAS_ARG`, so
    /// `-autorotate 0` takes a value while `-noautorotate` does not.
    ///
    /// Follows ffmpeg 5.1's option table (`fftools/ffmpeg_opt.c`, `fftools/cmdutils.h`) as
    /// `split_commandline()` in `fftools/cmdutils.c` reads it.
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    ///
    /// assert!(Command::is_value_less("an"));
    /// assert!(Command::is_value_less("nostdin"));
    /// assert!(!Command::is_value_less("autorotate"));
    /// assert!(!Command::is_value_less("crf"));
    /// ```
    pub fn is_value_less(name: &str) -> bool {
        match options::find(name) {
            Some(def) => matches!(def.kind, Kind::Flag | Kind::Bool),
            None => options::find_negated(name).is_some(),
        }
    }

    /// Does ffmpeg itself define the option `name` (without `-` and stream specifier, as
    /// [`Opt::name`]): is it in ffmpeg 5.1's own option table (`c`, `map`, `filter_complex`,
    /// `h`, ...) or the `no` form of a boolean one (`nostdin`, `noautorotate`)? False for
    /// codec, format and filter private options (AVOptions such as `crf` or `movflags`), which
    /// only the installed ffmpeg can tell (see [`crate::capabilities`]), and for `i`, the input
    /// separator.
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    ///
    /// assert!(Command::is_known_option("map"));
    /// assert!(Command::is_known_option("nostdin"));
    /// assert!(!Command::is_known_option("noreport"));
    /// assert!(!Command::is_known_option("crf"));
    /// ```
    pub fn is_known_option(name: &str) -> bool {
        options::find(name).is_some() || options::find_negated(name).is_some()
    }

    /// The names of ffmpeg 5.1's own options ([`Command::is_known_option`]), without `-` and
    /// without the `no` forms, sorted.
    pub fn known_option_names() -> impl Iterator<Item = &'static str> {
        options::names()
    }

    /// Is the option `name` (without `-` and stream specifier) global, applying to the whole
    /// program wherever it appears (`y`, `filter_complex`, `loglevel`, `progress`, `nostdin`,
    /// ...)? Per-file options and every option ffmpeg does not define itself (AVOptions such as
    /// `crf` or `movflags`) are not.
    ///
    /// An option is global in ffmpeg 5.1 unless its table entry has `OPT_PERFILE`, `OPT_SPEC`
    /// or `OPT_OFFSET` (`add_opt()` in `fftools/cmdutils.c`).
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    ///
    /// assert!(Command::is_global_option("filter_complex"));
    /// assert!(Command::is_global_option("nostdin"));
    /// assert!(!Command::is_global_option("c"));
    /// assert!(!Command::is_global_option("crf"));
    /// ```
    pub fn is_global_option(name: &str) -> bool {
        options::find(name).or_else(|| options::find_negated(name)).is_some_and(|def| def.scope == Scope::Global)
    }

    /// Number of arguments in the command line as split (or as given to [`Command::from_args`]).
    pub fn arg_count(&self) -> usize {
        self.arg_count
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
    /// options and `-i URL`, then each output's options and URL. [`Command::from_args`] reads
    /// it back to a command with the same options, inputs and outputs, which gives the same
    /// list again. It is not `==` to the original when options moved: positions
    /// ([`Opt::position`], [`Input::position`], ...) index the argument list that was parsed.
    ///
    /// An `OPT_EXIT` option written last without its optional argument (`... out.mp4 -h`) stays
    /// last, since at the front it would take the next argument as its own.
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    ///
    /// let command = Command::parse("-i in.mp4 -y out.mp4")?;
    /// assert_eq!(command.to_args(), ["-y", "-i", "in.mp4", "out.mp4"]);
    /// let again = Command::from_args(command.to_args())?;
    /// assert_eq!(again.to_args(), command.to_args());
    /// assert_ne!(again, command); // `-y` was argument 3, now it is argument 1
    /// # Ok::<(), ffmpeg_core::command::CommandError>(())
    /// ```
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(self.arg_count);
        self.push_global_args(&mut args);
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
        self.push_trailing_args(&mut args);
        args
    }

    /// Pushes the global options that go first (all but [`Command::push_trailing_args`]'s).
    pub(crate) fn push_global_args(&self, args: &mut Vec<String>) {
        for o in self.global_options.iter().filter(|o| !o.must_be_last()) {
            o.push_args(args);
        }
    }

    /// Pushes the `OPT_EXIT` options that have no argument (at most one: it was the last
    /// argument), which must stay last.
    pub(crate) fn push_trailing_args(&self, args: &mut Vec<String>) {
        for o in self.global_options.iter().filter(|o| o.must_be_last()) {
            o.push_args(args);
        }
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
    /// An `OPT_EXIT` option without its optional argument: anywhere but last it would take the
    /// next argument.
    fn must_be_last(&self) -> bool {
        self.value.is_none() && options::find(&self.name).is_some_and(|d| d.kind == Kind::Exit)
    }
    pub(crate) fn push_args(&self, args: &mut Vec<String>) {
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
    /// The demuxer forced with `-f` (the last one), e.g. `lavfi`; `None` when ffmpeg probes it.
    pub fn format(&self) -> Option<&str> {
        self.option("f").and_then(Opt::value)
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
    /// The muxer forced with `-f` (the last one), e.g. `null` in `-f null -`; `None` when ffmpeg
    /// guesses it from the URL's extension.
    pub fn format(&self) -> Option<&str> {
        self.option("f").and_then(Opt::value)
    }
    /// Whether `-strftime` is on: the image2 and segment muxers then pass the output's own name
    /// through `strftime`, the HLS muxer its segment names (`-hls_segment_filename`),
    /// directories included (`img2enc.c`, `segment.c`, `hlsenc.c` in ffmpeg 5.1). Any value
    /// but an off value of an `AV_OPT_TYPE_BOOL` ([`BOOL_OFF`], or a number that is 0) is on.
    ///
    /// ```
    /// use ffmpeg_core::command::Command;
    ///
    /// let on = Command::parse("-i in.mp4 -strftime 1 snap/%Y/%H%M%S.jpg")?;
    /// assert!(on.outputs()[0].strftime());
    /// let off = Command::parse("-i in.mp4 -strftime false snap/%03d.jpg")?;
    /// assert!(!off.outputs()[0].strftime());
    /// # Ok::<(), ffmpeg_core::command::CommandError>(())
    /// ```
    pub fn strftime(&self) -> bool {
        self.option("strftime").and_then(Opt::value).is_some_and(|value| !bool_is_off(value))
    }
}

/// The values that turn an `AV_OPT_TYPE_BOOL` option off (`set_string_bool()` in
/// `libavutil/opt.c`, ffmpeg 5.1); besides these, a number equal to 0.
pub const BOOL_OFF: &[&str] = &["0", "false", "no", "n", "off", "disable", "disabled"];

/// Whether `value` turns an `AV_OPT_TYPE_BOOL` option off ([`BOOL_OFF`]).
fn bool_is_off(value: &str) -> bool {
    BOOL_OFF.iter().any(|off| off.eq_ignore_ascii_case(value)) || value.parse::<f64>().is_ok_and(|n| n == 0.0)
}

impl fmt::Display for Command {
    /// The canonical argument list ([`Command::to_args`]) joined with POSIX shell quoting, so
    /// that [`Command::parse`] reads it back to the same options, inputs and outputs (positions
    /// may differ, as for [`Command::to_args`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_words::join(self.to_args()))
    }
}

/// How many arguments after an option belong to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    One,
    /// The next argument if there is one (`OPT_EXIT`).
    OneIfAny,
}

/// How ffmpeg 5.1 treats `-name`: see the `options` module.
fn classify(name: &str) -> (Takes, Scope) {
    match options::find(name) {
        Some(def) => {
            let takes = match def.kind {
                Kind::Value | Kind::BoolValue => Takes::One,
                Kind::Flag | Kind::Bool => Takes::Nothing,
                Kind::Exit => Takes::OneIfAny,
            };
            (takes, def.scope)
        }
        // `-nostdin`, `-noautorotate`: the value-less `no` form of a boolean option.
        None => match options::find_negated(name) {
            Some(def) => (Takes::Nothing, def.scope),
            // A codec, format or filter private option (AVOption): always a value, per file.
            None => (Takes::One, Scope::PerFile),
        },
    }
}

/// Is `arg` an option (as opposed to a URL)? As in `split_commandline`: it starts with `-` and
/// is not exactly `-`.
fn is_option(arg: &str) -> bool {
    arg.len() > 1 && arg.starts_with('-')
}

/// Splits an option body (the argument without its leading `-`) into name and stream
/// specifier at the first `:`; `None` for a malformed option.
fn split_name(body: &str) -> Option<(&str, Option<&str>)> {
    let (name, spec) = match body.split_once(':') {
        Some((name, spec)) => (name, Some(spec)),
        None => (body, None),
    };
    if spec == Some("") || name == "i" {
        return None;
    }
    // `-?` and `--help` are real options; every other name is ffmpeg- or AVOption-shaped: an
    // ASCII letter, then letters, digits, `_` and `-` (`-x264-params`). `-2` is not an option.
    let known = options::find(name).is_some();
    let mut chars = name.chars();
    let shaped = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (known || shaped).then_some((name, spec))
}

/// The state of one left-to-right pass over the arguments.
#[derive(Default)]
struct Parser {
    global_options: Vec<Opt>,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    /// Per-file options waiting for the next input or output.
    pending: Vec<Opt>,
}

impl Parser {
    fn run(mut self, args: Vec<String>) -> Result<Command, CommandError> {
        if args.is_empty() {
            return Err(CommandError::Empty);
        }
        let arg_count = args.len();
        let mut args = args.into_iter().enumerate().map(|(i, arg)| (i + 1, arg));
        while let Some((position, arg)) = args.next() {
            if !is_option(&arg) {
                let options = std::mem::take(&mut self.pending);
                self.outputs.push(Output { options, url: arg, position });
                continue;
            }
            if arg == "-i" {
                let Some((url_position, url)) = args.next() else {
                    return Err(CommandError::MissingValue { position, argument: arg });
                };
                let options = std::mem::take(&mut self.pending);
                self.inputs.push(Input { options, url, position: url_position });
                continue;
            }
            let Some((name, spec)) = split_name(&arg[1..]) else {
                return Err(CommandError::InvalidOption { position, argument: arg });
            };
            let (takes, scope) = classify(name);
            let value = match takes {
                Takes::Nothing => None,
                Takes::OneIfAny => args.next().map(|(_, value)| value),
                Takes::One => match args.next() {
                    Some((_, value)) => Some(value),
                    None => {
                        return Err(CommandError::MissingValue { position, argument: arg });
                    }
                },
            };
            let opt = Opt { name: name.to_owned(), stream_specifier: spec.map(str::to_owned), value, position };
            match scope {
                Scope::Global => self.global_options.push(opt),
                Scope::PerFile => self.pending.push(opt),
            }
        }
        if self.inputs.is_empty() {
            return Err(CommandError::NoInput);
        }
        if self.outputs.is_empty() {
            return Err(CommandError::NoOutput);
        }
        if let Some(first) = self.pending.first() {
            return Err(CommandError::TrailingOption { position: first.position, argument: first.flag() });
        }
        Ok(Command { global_options: self.global_options, inputs: self.inputs, outputs: self.outputs, arg_count })
    }
}
