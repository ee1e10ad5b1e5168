//! Encoder settings options (`-x264-params`, `-x264opts`, `-x265-params`, ...): the keys that
//! name files are resolved like `-passlogfile` and handed to the library as absolute paths;
//! the files a library names by itself (x264's `x264_2pass.log` with `pass` and no `stats`)
//! are placed in the data directory, where ffmpeg would write them in a plain directory.
//!
//! The value is read as ffmpeg reads it ([`ParamSyntax`]), each key as the library reads it
//! ([`KeySpelling`](crate::policy::KeySpelling)); a rewritten value is written back so that
//! ffmpeg reads exactly the checked pairs.

use std::path::Path;

use super::options::{Checked, Side};
use super::{OptionFile, Sandbox, SandboxError};
use crate::command::{Opt, Output};
use crate::policy::{
    self, EncoderParams, OptionTreatment, ParamKey, ParamPair, ParamSyntax, RuleId, classify_key, library_key,
};

impl Sandbox {
    /// Checks one encoder settings option: refused keys and path-like values are refused, file
    /// keys resolved (recorded in `checked.files`, the value rewritten in `checked.values`).
    pub(super) fn check_encoder_params(
        &self,
        opt: &Opt,
        value: &str,
        params: &'static EncoderParams,
        side: Side<'_>,
        checked: &mut Checked,
    ) -> Result<(), SandboxError> {
        let flag = opt.flag();
        let forbidden = |rule: RuleId, reason: String| SandboxError::Forbidden {
            position: opt.position(),
            argument: opt.to_string(),
            rule,
            reason,
        };
        let mut pairs = policy::split_params(params.syntax, value).map_err(|why| {
            forbidden(RuleId::InvalidValue, format!("option `{flag}`: not a `key=value:key=value` list ({why})"))
        })?;
        if params.syntax == ParamSyntax::Dictionary {
            // A key that only a plain split at every `:` finds (`keyint=1\:stats=x`) is not
            // what ffmpeg reads; refuse the ambiguity rather than guess.
            for piece in policy::split_params(ParamSyntax::ColonList, value).unwrap_or_default() {
                let names_file = !matches!(classify_key(params, &piece.key), Ok(ParamKey::Other));
                if names_file && !pairs.iter().any(|pair| pair.key == piece.key) {
                    return Err(forbidden(
                        RuleId::ForbiddenValue,
                        format!(
                            "option `{flag}`: `{}` reads as a key that names a file when split at \
                             every `:`; write the settings without escaped or quoted `:`",
                            piece.key
                        ),
                    ));
                }
            }
        }
        let mut changed = false;
        for pair in &mut pairs {
            let key = classify_key(params, &pair.key)
                .map_err(|why| forbidden(RuleId::ForbiddenValue, format!("option `{flag}`: {why}")))?;
            match key {
                ParamKey::Other => policy::check_param_value(&pair.key, &pair.value)
                    .map_err(|why| forbidden(RuleId::ForbiddenValue, format!("option `{flag}`: {why}")))?,
                ParamKey::File(file) if file.unless.is_keyword(&pair.value) => {}
                ParamKey::File(file) => {
                    let context = format!("option `{flag}` key `{}`", pair.key);
                    let name = policy::param_file_name(&pair.value);
                    let path = self.resolve_file(name, file.file_use, side).map_err(|problem| SandboxError::Path {
                        position: opt.position(),
                        argument: opt.to_string(),
                        context: context.clone(),
                        problem,
                    })?;
                    pair.value = path.as_str().to_owned();
                    changed = true;
                    checked.files.push(OptionFile {
                        position: opt.position(),
                        context,
                        path,
                        file_use: file.file_use,
                        output: side.output(),
                    });
                }
            }
        }
        if changed {
            let joined = join(params.syntax, &pairs).map_err(|why| forbidden(RuleId::ForbiddenValue, why))?;
            checked.values.insert(opt.position(), joined);
        }
        Ok(())
    }

    /// For output `index`: adds the files its encoder settings make a library name by itself
    /// ([`EncoderParams::defaults`]) to the settings, in the data directory, and records them
    /// like a file the client named.
    pub(super) fn default_param_files(
        &self,
        output: &Output,
        index: usize,
        checked: &mut Checked,
    ) -> Result<(), SandboxError> {
        let settings: Vec<(&Opt, &'static EncoderParams)> = output
            .options()
            .iter()
            .filter(|opt| opt.value().is_some())
            .filter_map(|opt| match *self.policy.option_rule(opt.name()).treatment() {
                OptionTreatment::EncoderParams(params) => Some((opt, params)),
                _ => None,
            })
            .collect();
        // ffmpeg's `-pass` for video streams: libx264 then takes its statistics file from
        // `-passlogfile` (ffmpeg sets libx264's `stats` option).
        let pass_option = output.options().iter().any(|o| {
            o.name() == "pass" && o.value().is_some() && matches!(o.stream_specifier(), None | Some("v" | "V"))
        });
        let keys_of = |opt: &Opt, params: &EncoderParams, checked: &Checked| -> Vec<(String, bool)> {
            let text = checked.values.get(&opt.position()).map_or(opt.value().unwrap_or_default(), String::as_str);
            policy::split_params(params.syntax, text)
                .unwrap_or_default()
                .iter()
                .map(|pair| library_key(params.spelling, &pair.key))
                .collect()
        };
        for &(opt, params) in &settings {
            for default in params.defaults {
                if default.unless_pass_option && pass_option {
                    continue;
                }
                let asks = keys_of(opt, params, checked)
                    .iter()
                    .any(|(name, negated)| !negated && default.when.contains(&name.as_str()));
                let named = settings.iter().filter(|(_, other)| other.library == params.library).any(
                    |(other, other_params)| {
                        keys_of(other, other_params, checked).iter().any(|(name, _)| name == default.key)
                    },
                );
                let Some(file) = params.files.iter().find(|file| file.key == default.key) else { continue };
                if !asks || named {
                    continue;
                }
                let context = format!("option `{}` (default `{}` file `{}`)", opt.flag(), default.key, default.name);
                let path = self.resolve_file(default.name, file.file_use, Side::Output(index, Path::new(""))).map_err(
                    |problem| SandboxError::Path {
                        position: opt.position(),
                        argument: opt.to_string(),
                        context: context.clone(),
                        problem,
                    },
                )?;
                let text = checked.values.get(&opt.position()).map_or(opt.value().unwrap_or_default(), String::as_str);
                let mut pairs = policy::split_params(params.syntax, text).unwrap_or_default();
                pairs.push(ParamPair { key: default.key.to_owned(), value: path.as_str().to_owned() });
                let joined = join(params.syntax, &pairs).map_err(|reason| SandboxError::Forbidden {
                    position: opt.position(),
                    argument: opt.to_string(),
                    rule: RuleId::ForbiddenValue,
                    reason,
                })?;
                checked.values.insert(opt.position(), joined);
                checked.files.push(OptionFile {
                    position: opt.position(),
                    context,
                    path,
                    file_use: file.file_use,
                    output: Some(index),
                });
            }
        }
        Ok(())
    }
}

/// [`policy::join_params`], or why the value cannot be written.
fn join(syntax: ParamSyntax, pairs: &[ParamPair]) -> Result<String, String> {
    policy::join_params(syntax, pairs).ok_or_else(|| {
        "`-x264opts` splits at every `:` without escapes, and a resolved path holds `:` (the data \
         directory's path): use `-x264-params`"
            .to_owned()
    })
}
