//! Filter graph checks: every filter of a graph (`-vf`, `-filter_complex`, a `lavfi` input)
//! against the policy's filter rules; files named in filter options resolved and rewritten.

use super::options::{Checked, Side};
use super::path::Want;
use super::{OptionFile, PathProblem, Sandbox, SandboxError};
use crate::filtergraph::{self, FilterArg};
use crate::policy::{self, Access, FileUse, FilterOptionCheck, FilterTreatment, PathBase, RuleId};

impl Sandbox {
    /// Parses and checks a filter graph found at `position` (`argument` as written); returns
    /// the graph rewritten with resolved paths, or `None` when it needs no change.
    pub(super) fn check_graph(
        &self,
        text: &str,
        position: usize,
        argument: &str,
        output: Option<usize>,
        checked: &mut Checked,
    ) -> Result<Option<String>, SandboxError> {
        let mut graph = filtergraph::parse(text).map_err(|error| SandboxError::FilterGraph {
            position,
            argument: argument.to_owned(),
            error,
        })?;
        let forbidden = |reason: String| SandboxError::Forbidden {
            position,
            argument: argument.to_owned(),
            rule: RuleId::ForbiddenFilter,
            reason,
        };
        let mut changed = false;
        for filter in graph.filters_mut() {
            let name = filter.name.clone();
            let rule = self.policy.filter_rule(&name);
            let checks = match *rule.treatment() {
                FilterTreatment::Checked(checks) => checks,
                FilterTreatment::Forbidden => {
                    return Err(forbidden(format!("filter `{name}` is not allowed: {}", rule.reason())));
                }
                _ => continue,
            };
            let mut positional = 0;
            for arg in &mut filter.args {
                let (key, value, index) = match arg {
                    FilterArg::Positional(value) => {
                        positional += 1;
                        (None, value, positional - 1)
                    }
                    FilterArg::Named { key, value } => (Some(key.as_str()), value, usize::MAX),
                };
                let Some(check) = checks.iter().find(|check| check.matches(key, index)) else {
                    continue;
                };
                // An empty value names no file (`drawtext=::t.txt` leaves `fontfile` empty).
                if value.is_empty() && check.check != FilterOptionCheck::SandboxWhitelists {
                    continue;
                }
                let option = key.unwrap_or(check.option);
                let context = format!("filter `{name}` option `{option}`");
                let path_error = |problem: PathProblem| SandboxError::Path {
                    position,
                    argument: argument.to_owned(),
                    context: context.clone(),
                    problem,
                };
                match check.check {
                    FilterOptionCheck::File(file_use) => {
                        let path = self.resolve_file(value, file_use, Side::Global).map_err(path_error)?;
                        *value = path.as_str().to_owned();
                        checked.files.push(OptionFile { position, context: context.clone(), path, file_use, output });
                        changed = true;
                    }
                    FilterOptionCheck::SubtitlesFile => {
                        let file_use = FileUse {
                            access: Access::Read,
                            base: PathBase::DataDirectory,
                            naming: policy::Naming::Exact,
                        };
                        let path = self.resolve_path(value, Want::File).map_err(path_error)?;
                        *value = format!("{SUBFILE_PREFIX}{}", path.as_str());
                        checked.files.push(OptionFile { position, context: context.clone(), path, file_use, output });
                        changed = true;
                    }
                    FilterOptionCheck::InputFormat => {
                        self.check_input_format(value, position, argument)?;
                    }
                    FilterOptionCheck::SandboxWhitelists => {
                        return Err(forbidden(format!(
                            "{context} is not allowed: the sandbox sets it to the inputs' \
                             whitelists"
                        )));
                    }
                    FilterOptionCheck::Forbidden(reason) => {
                        return Err(forbidden(format!("{context} is not allowed: {reason}")));
                    }
                }
            }
            for check in checks {
                if check.check == FilterOptionCheck::SandboxWhitelists {
                    filter.args.push(FilterArg::Named {
                        key: check.option.to_owned(),
                        value: format!(
                            "protocol_whitelist=file:format_whitelist={}",
                            self.policy.input_format_whitelist()
                        ),
                    });
                    changed = true;
                }
            }
        }
        Ok(changed.then(|| graph.to_string()))
    }
}

/// The `subtitles` filter's files go through the `subfile` protocol, whose default protocol
/// whitelist (`file`) then binds the demuxer's own opens; `start 0, end 0` is the whole file.
const SUBFILE_PREFIX: &str = "subfile,,start,0,end,0,,:";
