//! Option checks: each option of a command against the policy's option rules; file-valued
//! options resolved, format names and nested option lists checked.

use std::collections::BTreeMap;
use std::path::Path;

use super::{OptionFile, Sandbox, SandboxError};
use crate::command::Opt;
use crate::pattern::has_hls_variant;
use crate::policy::{self, OptionTreatment, PathBase, RuleId};

/// Where an option appears.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side<'a> {
    Global,
    Input,
    /// An output: its index and its directory relative to the data directory (empty for
    /// `-f null -`).
    Output(usize, &'a Path),
}

impl Side<'_> {
    pub(super) fn output(self) -> Option<usize> {
        match self {
            Side::Output(index, _) => Some(index),
            Side::Global | Side::Input => None,
        }
    }
}

/// What checking a command collects.
#[derive(Debug, Default)]
pub(super) struct Checked {
    pub(super) values: BTreeMap<usize, String>,
    pub(super) files: Vec<OptionFile>,
}

impl Sandbox {
    /// Checks one option against the policy, recording rewritten values and resolved files.
    pub(super) fn check_option(&self, opt: &Opt, side: Side<'_>, checked: &mut Checked) -> Result<(), SandboxError> {
        let rule = self.policy.option_rule(opt.name());
        let treatment = *rule.treatment();
        let forbidden = |rule_id: RuleId, reason: String| SandboxError::Forbidden {
            position: opt.position(),
            argument: opt.to_string(),
            rule: rule_id,
            reason,
        };
        if treatment == OptionTreatment::Forbidden {
            return Err(forbidden(
                RuleId::ForbiddenOption,
                format!("option `{}` is not allowed: {}", opt.flag(), rule.reason()),
            ));
        }
        let Some(value) = opt.value() else {
            return Ok(());
        };
        match treatment {
            OptionTreatment::Allowed | OptionTreatment::Forbidden => Ok(()),
            OptionTreatment::LogLevel => policy::check_value(treatment, value)
                .map_err(|why| forbidden(RuleId::InvalidValue, format!("option `{}`: {why}", opt.flag()))),
            OptionTreatment::EncoderParams(params) => self.check_encoder_params(opt, value, params, side, checked),
            OptionTreatment::OnlyValues(_) | OptionTreatment::PresetName | OptionTreatment::StreamMap => {
                policy::check_value(treatment, value).map_err(|why| {
                    forbidden(RuleId::ForbiddenValue, format!("option `{}`: {why}; {}", opt.flag(), rule.reason()))
                })
            }
            OptionTreatment::File(file_use) => {
                let context = format!("option `{}`", opt.flag());
                // The HLS muxer puts the master playlist one level above a playlist directory
                // named with `%v` (`update_master_pl_name()` in `libavformat/hlsenc.c`):
                // `hls/%v/index.m3u8` with `-master_pl_name m.m3u8` writes `hls/m.m3u8`.
                let side = match side {
                    Side::Output(index, dir)
                        if opt.name() == "master_pl_name"
                            && dir.file_name().is_some_and(|name| has_hls_variant(&name.to_string_lossy())) =>
                    {
                        Side::Output(index, dir.parent().unwrap_or(Path::new("")))
                    }
                    side => side,
                };
                let path = self.resolve_file(value, file_use, side).map_err(|problem| SandboxError::Path {
                    position: opt.position(),
                    argument: opt.to_string(),
                    context: context.clone(),
                    problem,
                })?;
                if file_use.base == PathBase::DataDirectory {
                    checked.values.insert(opt.position(), path.as_str().to_owned());
                }
                checked.files.push(OptionFile {
                    position: opt.position(),
                    context,
                    path,
                    file_use,
                    output: side.output(),
                });
                Ok(())
            }
            OptionTreatment::FilterGraph => {
                let argument = opt.to_string();
                if let Some(graph) = self.check_graph(value, opt.position(), &argument, side.output(), checked)? {
                    checked.values.insert(opt.position(), graph);
                }
                Ok(())
            }
            OptionTreatment::Format => match side {
                Side::Input => self.check_input_format(value, opt.position(), &opt.to_string()),
                Side::Output(..) => self.check_output_format(value, opt.position(), &opt.to_string()),
                Side::Global => Ok(()),
            },
            OptionTreatment::NestedOptions => self.check_nested_options(opt, value, side),
        }
    }

    /// `-f NAME` on an input (or `movie`'s `format_name`).
    pub(super) fn check_input_format(&self, name: &str, position: usize, argument: &str) -> Result<(), SandboxError> {
        let reason = match self.policy.input_format_rule(name) {
            Some(rule) if rule.is_allowed() => return Ok(()),
            Some(rule) => format!("input format `{name}` is not allowed: {}", rule.reason()),
            None => format!("`{name}` is not an input format (demuxer) that jobs may use"),
        };
        Err(SandboxError::Forbidden { position, argument: argument.to_owned(), rule: RuleId::ForbiddenFormat, reason })
    }

    /// Checks an input opened without `-f` (a command's `-i`, or a file given to ffprobe) at
    /// 1-based `position` by its name: a name that says playlist or manifest (`x.m3u8`, `x.m3u`:
    /// HLS; `x.mpd`: DASH) while the policy refuses that input format is refused here, naming
    /// the format, instead of failing at run time with ffmpeg's "Format not on whitelist" or
    /// ffprobe's bare "Invalid argument" (both probe such a file as `hls` or `dash`,
    /// libavformat/hls.c and dashdec.c). `-f` with another format reads the file as that format.
    /// [`Sandbox::resolve_command`] calls it for every `-i` without `-f`.
    ///
    /// # Errors
    /// [`SandboxError::Forbidden`] with [`RuleId::ForbiddenFormat`], naming the format and why.
    pub fn check_input_by_name(&self, url: &str, position: usize) -> Result<(), SandboxError> {
        const PLAYLIST_EXTENSIONS: &[(&str, &str, &str)] = &[
            ("m3u8", "hls", "an HLS playlist"),
            ("m3u", "hls", "an HLS playlist"),
            ("mpd", "dash", "a DASH manifest"),
        ];
        let Some(extension) = Path::new(url).extension().and_then(|e| e.to_str()) else {
            return Ok(());
        };
        let Some(&(_, name, kind)) = PLAYLIST_EXTENSIONS.iter().find(|(e, ..)| e.eq_ignore_ascii_case(extension))
        else {
            return Ok(());
        };
        match self.policy.input_format_rule(name) {
            Some(rule) if !rule.is_allowed() => Err(SandboxError::Forbidden {
                position,
                argument: url.to_owned(),
                rule: RuleId::ForbiddenFormat,
                reason: format!(
                    "the name says {kind}, which ffmpeg reads with the input format `{name}`, and \
                     `{name}` is not allowed: {} (if the file is not {kind}, name its format with `-f`)",
                    rule.reason()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The refusal of the input `url` at 1-based `position` that ffmpeg or ffprobe opened as
    /// the input format `demuxer` (by the file's content or name), when the policy refuses that
    /// format; `None` when it allows it. `demuxer` is the name in the context prefix of the
    /// "Format not on whitelist" error libavformat logs (`[hls @ 0x...]`,
    /// `avformat_open_input()` in `libavformat/demux.c`): one name or a comma-separated list
    /// (`mov,mp4,m4a,3gp,3g2,mj2`). For an answer that names what was refused, where the name
    /// check ([`Sandbox::check_input_by_name`]) could not see it: a playlist named `x.txt`, an
    /// SDP file.
    pub fn refused_input_format(&self, url: &str, position: usize, demuxer: &str) -> Option<SandboxError> {
        demuxer.split(',').find_map(|name| match self.policy.input_format_rule(name) {
            Some(rule) if !rule.is_allowed() => Some(SandboxError::Forbidden {
                position,
                argument: url.to_owned(),
                rule: RuleId::ForbiddenFormat,
                reason: format!(
                    "ffmpeg recognised the file (by its content or its name) as the input format `{name}`, and \
                     `{name}` is not allowed: {}",
                    rule.reason()
                ),
            }),
            _ => None,
        })
    }

    /// `-f NAME` on an output, or `-segment_format NAME`.
    fn check_output_format(&self, name: &str, position: usize, argument: &str) -> Result<(), SandboxError> {
        match self.policy.output_format_rule(name) {
            Some(rule) if !rule.is_allowed() => Err(SandboxError::Forbidden {
                position,
                argument: argument.to_owned(),
                rule: RuleId::ForbiddenFormat,
                reason: format!("output format `{name}` is not allowed: {}", rule.reason()),
            }),
            _ => Ok(()),
        }
    }

    /// `-segment_format_options k=v:k=v` and the like: each key checked like an option.
    fn check_nested_options(&self, opt: &Opt, value: &str, side: Side<'_>) -> Result<(), SandboxError> {
        let forbidden = |rule_id: RuleId, reason: String| SandboxError::Forbidden {
            position: opt.position(),
            argument: opt.to_string(),
            rule: rule_id,
            reason,
        };
        let pairs = policy::parse_dictionary(value).map_err(|why| {
            forbidden(
                RuleId::ForbiddenValue,
                format!("option `{}`: not a `key=value:key=value` list ({why})", opt.flag()),
            )
        })?;
        for (key, nested) in pairs {
            let rule = self.policy.option_rule(&key);
            let treatment = *rule.treatment();
            match treatment {
                OptionTreatment::Allowed => {}
                OptionTreatment::Forbidden => {
                    return Err(forbidden(
                        RuleId::ForbiddenOption,
                        format!("option `{}`: `{key}` is not allowed: {}", opt.flag(), rule.reason()),
                    ));
                }
                OptionTreatment::OnlyValues(_)
                | OptionTreatment::PresetName
                | OptionTreatment::StreamMap
                | OptionTreatment::LogLevel
                | OptionTreatment::EncoderParams(_) => {
                    policy::check_value(treatment, &nested).map_err(|why| {
                        forbidden(RuleId::ForbiddenValue, format!("option `{}`: `{key}`: {why}", opt.flag()))
                    })?;
                }
                OptionTreatment::Format => {
                    if matches!(side, Side::Output(..)) {
                        self.check_output_format(&nested, opt.position(), &opt.to_string())?;
                    }
                }
                OptionTreatment::File(_) | OptionTreatment::FilterGraph | OptionTreatment::NestedOptions => {
                    return Err(forbidden(
                        RuleId::ForbiddenOption,
                        format!(
                            "option `{}`: `{key}` names a file or further options, which the \
                             sandbox does not resolve inside nested options; give it as `-{key}` \
                             where ffmpeg allows",
                            opt.flag()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
