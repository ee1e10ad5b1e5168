//! The security policy for ffmpeg arguments: which options, filters and formats a job may use,
//! and which of their values name files that the [sandbox](crate::sandbox) must resolve.
//!
//! A client controls the whole command line, and ffmpeg can read and write files, open network
//! connections and load code through far more than its input and output URLs: options whose
//! value is a path (`-vstats_file /x`, `-hls_segment_filename /x`), filters that open files or
//! sockets (`subtitles=/etc/passwd`, `zmq`, `ladspa`), playlists that name further files (an HLS
//! playlist naming `/abs/seg.ts`), and formats that are devices or network protocols. The
//! policy is data: one rule per option, filter and format, each with a stable rule id (see
//! [`RuleId`]) and a human reason, documented in the project's `docs/security.md` (its tables
//! are generated from [`Policy::default`] by `cargo xtask docs`, through the accessors below).
//!
//! Every option gets a treatment ([`OptionTreatment`]): allowed; allowed with a value the
//! sandbox checks (a file it resolves, a filter graph, a format name, nested options, ...); or
//! forbidden. ffmpeg's own options each have a row; codec, format and filter private options
//! (AVOptions such as `-crf`) are allowed unless a row says otherwise. Filters are allowed,
//! forbidden, or allowed with options the sandbox checks ([`FilterOptionRule`]). Input formats
//! (demuxers) are an allowlist, enforced by ffmpeg itself through `-format_whitelist` (content
//! probing picks a demuxer whatever `-f` says: a playlist named `x.txt` is read as HLS);
//! output formats (muxers) are a denylist.
//!
//! [`Policy::default`] is the policy `docs/security.md` describes; operators adjust it:
//!
//! ```
//! use ffmpeg_core::policy::{OptionTreatment, Policy};
//!
//! let policy = Policy::default()
//!     .forbid_filter("subtitles", "no subtitle burn-in on this server")
//!     .allow_option("hwaccel_device");
//! assert_eq!(policy.option_rule("hwaccel_device").treatment(), &OptionTreatment::Allowed);
//! assert_eq!(policy.option_rule("vstats_file").treatment(), &OptionTreatment::Forbidden);
//! assert!(policy.filter_rule("subtitles").is_forbidden());
//! assert!(policy.input_format_rule("hls").is_some_and(|r| !r.is_allowed()));
//! assert!(policy.input_format_whitelist().split(',').any(|f| f == "mov"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checks;
mod rule;
mod rules;
mod tables;

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::command::Command;

pub(crate) use checks::{
    ParamKey, ParamPair, check_param_value, check_value, classify_key, get_token, join_params, library_key,
    param_file_name, parse_dictionary, split_params,
};
pub use rule::RuleId;
pub use rules::{
    Access, EncoderParams, FileUse, FilterOptionCheck, FilterOptionRule, FilterRule, FilterTreatment, FormatRule,
    KeySpelling, Naming, NotAFile, OptionRule, OptionTreatment, ParamDefault, ParamFile, ParamSyntax, PathBase,
};

/// Which options, filters and formats a job may use, and which of their values name files.
///
/// [`Policy::default`] is the reviewed default; the builder methods adjust it. Names are
/// compared as ffmpeg compares them, and more strictly where ffmpeg would fail anyway: option
/// and filter names exactly, then ignoring ASCII case (so `-Report` meets the `-report` rule;
/// option names of one or two characters only exactly);
/// format names ignoring ASCII case and by any of their aliases (`av_match_name()` in
/// `libavformat/format.c`: `-f MP4` is the `mov,mp4,...` demuxer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    options: BTreeMap<String, OptionRule>,
    filters: BTreeMap<String, FilterRule>,
    input_formats: Vec<FormatRule>,
    output_formats: Vec<FormatRule>,
}

static DEFAULT_OPTION: OptionRule =
    OptionRule { name: Cow::Borrowed("*"), treatment: OptionTreatment::Allowed, reason: Cow::Borrowed("") };

static SLASH_OPTION: OptionRule = OptionRule {
    name: Cow::Borrowed("/option"),
    treatment: OptionTreatment::Forbidden,
    reason: Cow::Borrowed(
        "the `-/option FILE` form (ffmpeg 6 and later) reads the option's value from a file; \
         ffmpeg 5.1 takes it for an unknown option",
    ),
};

static DEFAULT_FILTER: FilterRule =
    FilterRule { name: Cow::Borrowed("*"), treatment: FilterTreatment::Allowed, reason: Cow::Borrowed("") };

const OPERATOR_ALLOWED: &str = "allowed by the operator";

impl Default for Policy {
    /// The default policy, as documented in `docs/security.md`.
    fn default() -> Policy {
        let options = tables::OPTIONS
            .iter()
            .map(|&(name, treatment, reason)| {
                let rule = OptionRule { name: Cow::Borrowed(name), treatment, reason: Cow::Borrowed(reason) };
                (name.to_owned(), rule)
            })
            .collect();
        let filters = tables::FILTERS
            .iter()
            .map(|&(name, checks, reason)| {
                let treatment = match checks {
                    Some(checks) => FilterTreatment::Checked(checks),
                    None => FilterTreatment::Forbidden,
                };
                let rule = FilterRule { name: Cow::Borrowed(name), treatment, reason: Cow::Borrowed(reason) };
                (name.to_owned(), rule)
            })
            .collect();
        let note = |names: &str| tables::DEMUXER_NOTES.iter().find(|(n, _)| *n == names).map_or("", |(_, note)| note);
        let mut input_formats: Vec<FormatRule> = tables::ALLOWED_DEMUXERS
            .iter()
            .map(|&names| FormatRule { names: Cow::Borrowed(names), allowed: true, reason: Cow::Borrowed(note(names)) })
            .collect();
        input_formats.extend(tables::FORBIDDEN_DEMUXERS.iter().map(|&(names, reason)| FormatRule {
            names: Cow::Borrowed(names),
            allowed: false,
            reason: Cow::Borrowed(reason),
        }));
        let output_formats = tables::FORBIDDEN_MUXERS
            .iter()
            .map(|&(names, reason)| FormatRule {
                names: Cow::Borrowed(names),
                allowed: false,
                reason: Cow::Borrowed(reason),
            })
            .collect();
        Policy { options, filters, input_formats, output_formats }
    }
}

impl Policy {
    /// Allows the option `name` (without `-` and stream specifier) as written, with no check of
    /// its value. Allowing a file-valued option this way hands its path to ffmpeg unresolved.
    #[must_use]
    pub fn allow_option(mut self, name: &str) -> Policy {
        self.set_option(name, OptionTreatment::Allowed, OPERATOR_ALLOWED.to_owned());
        self
    }

    /// Forbids the option `name` (without `-` and stream specifier, any specifier and any
    /// value), giving `reason` in refusals.
    #[must_use]
    pub fn forbid_option(mut self, name: &str, reason: impl Into<String>) -> Policy {
        self.set_option(name, OptionTreatment::Forbidden, reason.into());
        self
    }

    fn set_option(&mut self, name: &str, treatment: OptionTreatment, reason: String) {
        let name = name.trim_start_matches('-');
        self.options.insert(
            name.to_owned(),
            OptionRule { name: Cow::Owned(name.to_owned()), treatment, reason: Cow::Owned(reason) },
        );
    }

    /// Allows the filter `name` as written, with no check of its options: allowing a filter
    /// the default refuses lets it load code or open sockets; allowing one with checked
    /// options (`drawtext`) drops those checks.
    #[must_use]
    pub fn allow_filter(mut self, name: &str) -> Policy {
        self.set_filter(name, FilterTreatment::Allowed, OPERATOR_ALLOWED.to_owned());
        self
    }

    /// Forbids the filter `name`, giving `reason` in refusals.
    #[must_use]
    pub fn forbid_filter(mut self, name: &str, reason: impl Into<String>) -> Policy {
        self.set_filter(name, FilterTreatment::Forbidden, reason.into());
        self
    }

    fn set_filter(&mut self, name: &str, treatment: FilterTreatment, reason: String) {
        self.filters.insert(
            name.to_owned(),
            FilterRule { name: Cow::Owned(name.to_owned()), treatment, reason: Cow::Owned(reason) },
        );
    }

    /// Allows the input format (demuxer) `name`, by any of its names, adding it to the
    /// `-format_whitelist` the sandbox gives every input. A demuxer this policy does not know
    /// is added under `name`.
    #[must_use]
    pub fn allow_input_format(mut self, name: &str) -> Policy {
        set_format(&mut self.input_formats, name, true, OPERATOR_ALLOWED.to_owned());
        self
    }

    /// Forbids the input format (demuxer) `name`: `-f NAME` on an input is refused and ffmpeg
    /// will not pick it when probing.
    #[must_use]
    pub fn forbid_input_format(mut self, name: &str, reason: impl Into<String>) -> Policy {
        set_format(&mut self.input_formats, name, false, reason.into());
        self
    }

    /// Allows the output format (muxer) `name`.
    ///
    /// The `tee` muxer stays refused whatever the policy says: its URL is a list of further
    /// URLs that the sandbox cannot resolve.
    #[must_use]
    pub fn allow_output_format(mut self, name: &str) -> Policy {
        set_format(&mut self.output_formats, name, true, OPERATOR_ALLOWED.to_owned());
        self
    }

    /// Forbids the output format (muxer) `name` in `-f` and `-segment_format`.
    ///
    /// Muxers that ffmpeg picks from an output's extension are not affected (there is no
    /// muxer whitelist in ffmpeg); none of the default refusals has an extension.
    #[must_use]
    pub fn forbid_output_format(mut self, name: &str, reason: impl Into<String>) -> Policy {
        set_format(&mut self.output_formats, name, false, reason.into());
        self
    }

    /// The rule for the option `name` (without `-` and stream specifier, as
    /// [`Opt::name`](crate::command::Opt::name)): its own rule, else the rule of the same name
    /// ignoring ASCII case (for names longer than two characters: `-l` is an option of its
    /// own), else (for `-noX` forms of ffmpeg's boolean options) the rule of
    /// `X`, else "allowed". A name starting with `/` (ffmpeg 6's `-/option FILE` form) is
    /// forbidden.
    pub fn option_rule(&self, name: &str) -> &OptionRule {
        if name.starts_with('/') {
            return &SLASH_OPTION;
        }
        // Ignoring case only for longer names: `-l` (prompeg's FEC L) is not `-L`.
        let find = |name: &str| {
            self.options.get(name).or_else(|| {
                (name.len() > 2).then(|| self.options.values().find(|r| r.name.eq_ignore_ascii_case(name))).flatten()
            })
        };
        if let Some(rule) = find(name) {
            return rule;
        }
        if Command::is_value_less(name)
            && let Some(rule) = name.strip_prefix("no").and_then(find)
        {
            return rule;
        }
        &DEFAULT_OPTION
    }

    /// The rule for the filter `name` (without `@id`): its own rule, else the rule of the same
    /// name ignoring ASCII case, else "allowed".
    pub fn filter_rule(&self, name: &str) -> &FilterRule {
        self.filters
            .get(name)
            .or_else(|| self.filters.values().find(|rule| rule.name.eq_ignore_ascii_case(name)))
            .unwrap_or(&DEFAULT_FILTER)
    }

    /// The rule for the input format (demuxer) `name`, by any of its names ignoring ASCII
    /// case; `None` for a name the policy does not know, which the sandbox refuses (it is not
    /// on the format whitelist).
    pub fn input_format_rule(&self, name: &str) -> Option<&FormatRule> {
        find_format(&self.input_formats, name)
    }

    /// The rule for the output format (muxer) `name`, by any of its names ignoring ASCII case;
    /// `None` (allowed) for a muxer without a rule.
    pub fn output_format_rule(&self, name: &str) -> Option<&FormatRule> {
        find_format(&self.output_formats, name)
    }

    /// Every option rule, sorted by name.
    pub fn option_rules(&self) -> impl Iterator<Item = &OptionRule> {
        self.options.values()
    }

    /// Every filter rule, sorted by name.
    pub fn filter_rules(&self) -> impl Iterator<Item = &FilterRule> {
        self.filters.values()
    }

    /// Every input format rule: the allowed demuxers, then the refused ones.
    pub fn input_format_rules(&self) -> impl Iterator<Item = &FormatRule> {
        self.input_formats.iter()
    }

    /// Every output format rule (refused muxers, and any the operator allowed explicitly).
    pub fn output_format_rules(&self) -> impl Iterator<Item = &FormatRule> {
        self.output_formats.iter()
    }

    /// The value of `-format_whitelist` that the sandbox gives every input: the first name of
    /// each allowed demuxer, joined by `,`.
    ///
    /// ffmpeg checks the demuxer it chose (forced with `-f` or probed from the content) against
    /// this list by any of the demuxer's names (`av_match_list()` in `avformat_open_input()`,
    /// `libavformat/demux.c`), and nested opens inherit it (`ff_copy_whiteblacklists()`:
    /// `concat` entries, `vobsub`'s `.sub`). A planted HLS playlist named `x.txt` then fails with
    /// "Format not on whitelist" instead of being read (verified with ffmpeg 5.1.9).
    pub fn input_format_whitelist(&self) -> String {
        let names: Vec<&str> = self
            .input_formats
            .iter()
            .filter(|rule| rule.allowed)
            .filter_map(|rule| rule.names.split(',').next())
            .collect();
        names.join(",")
    }
}

fn find_format<'a>(rules: &'a [FormatRule], name: &str) -> Option<&'a FormatRule> {
    rules.iter().find(|rule| rule.matches(name))
}

fn set_format(rules: &mut Vec<FormatRule>, name: &str, allowed: bool, reason: String) {
    let reason = Cow::Owned(reason);
    match rules.iter_mut().find(|rule| rule.matches(name)) {
        Some(rule) => {
            rule.allowed = allowed;
            rule.reason = reason;
        }
        None => rules.push(FormatRule { names: Cow::Owned(name.to_owned()), allowed, reason }),
    }
}
