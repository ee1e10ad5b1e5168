//! The policy tables of `docs/security.md`, generated from `ffmpeg_core::policy::Policy::default()`
//! through the policy's public accessors (the generator is documentation tooling, not part of the
//! library's API).
//!
//! `cargo xtask docs` rewrites the part between the `policy-table` markers; `cargo xtask docs
//! --check` (part of `cargo xtask ci`) and the test below fail when it is out of date.

use std::fmt::Write as _;

use ffmpeg_core::policy::{
    Access, FileUse, FilterOptionCheck, FilterOptionRule, FilterTreatment, Naming, OptionTreatment, PathBase, Policy,
};

use crate::Result;

/// Where the generated tables start and end in `docs/security.md`.
const START: &str = "<!-- policy-table:start (generated from Policy::default() by `cargo xtask docs`) -->\n";
const END: &str = "<!-- policy-table:end -->";

/// Path of the document, relative to the workspace root.
pub(crate) const PATH: &str = "docs/security.md";

/// `doc` with the text between the markers replaced by the tables of `policy`.
pub(crate) fn update(doc: &str, policy: &Policy) -> Result<String> {
    let (Some(start), Some(end)) = (doc.find(START), doc.find(END)) else {
        return Err(format!("{PATH} lacks the policy-table markers `{}` and `{END}`", START.trim_end()).into());
    };
    Ok(format!("{}{START}{}{}", &doc[..start], markdown(policy)?, &doc[end..]))
}

/// The policy as Markdown: option rules (every rule that is not plain "allowed", then the list
/// of ffmpeg's own options that are), filter rules, input formats (refused ones and
/// conditions, then the allowed list) and output formats.
fn markdown(policy: &Policy) -> Result<String> {
    let mut out = String::new();
    out.push_str("### Options\n\n| Option | Treatment | Why |\n|---|---|---|\n");
    let plain = |rule: &&ffmpeg_core::policy::OptionRule| {
        *rule.treatment() == OptionTreatment::Allowed && rule.reason().is_empty()
    };
    for rule in policy.option_rules().filter(|rule| !plain(rule)) {
        let treatment = describe_option(rule.treatment())?;
        writeln!(out, "| `-{}` | {} | {} |", rule.name(), cell(&treatment), cell(rule.reason()))?;
    }
    let slash = policy.option_rule("/option");
    writeln!(out, "| `-/option` | {} | {} |", describe_option(slash.treatment())?, cell(slash.reason()))?;
    out.push_str("\nffmpeg's own options allowed as written: ");
    let allowed: Vec<String> = policy.option_rules().filter(plain).map(|rule| format!("`-{}`", rule.name())).collect();
    out.push_str(&allowed.join(", "));
    out.push_str(
        ". Every other option (codec, format and filter private options such as `-crf` or \
         `-movflags`) is allowed as written. A stream specifier (`-filter_script:v`) does \
         not change an option's rule; a name that differs only in case (`-Report`) gets the \
         same rule.\n",
    );

    out.push_str("\n### Filters\n\n| Filter | Treatment | Why |\n|---|---|---|\n");
    for rule in policy.filter_rules() {
        let treatment = match rule.treatment() {
            FilterTreatment::Allowed => "allowed".to_owned(),
            FilterTreatment::Forbidden => "refused".to_owned(),
            FilterTreatment::Checked(checks) => {
                checks.iter().map(describe_filter_option).collect::<Result<Vec<_>>>()?.join("; ")
            }
            other => return Err(format!("no description for filter treatment {other:?}").into()),
        };
        writeln!(out, "| `{}` | {} | {} |", rule.name(), cell(&treatment), cell(rule.reason()))?;
    }
    out.push_str("\nEvery other filter is allowed as written.\n");

    out.push_str(
        "\n### Input formats (demuxers)\n\nAn allowlist: every input gets `-format_whitelist` \
         with the allowed demuxers, so ffmpeg refuses the others even when it picks them by \
         probing the content.\n\n| Demuxer | Treatment | Why |\n|---|---|---|\n",
    );
    for rule in policy.input_format_rules().filter(|r| !r.is_allowed()) {
        writeln!(out, "| `{}` | refused | {} |", rule.names(), cell(rule.reason()))?;
    }
    for rule in policy.input_format_rules().filter(|r| r.is_allowed() && !r.reason().is_empty()) {
        writeln!(out, "| `{}` | allowed | {} |", rule.names(), cell(rule.reason()))?;
    }
    out.push_str("\nAllowed: ");
    let allowed: Vec<String> =
        policy.input_format_rules().filter(|r| r.is_allowed()).map(|r| format!("`{}`", r.names())).collect();
    out.push_str(&allowed.join(", "));
    out.push_str(".\n");

    out.push_str("\n### Output formats (muxers)\n\n| Muxer | Treatment | Why |\n|---|---|---|\n");
    for rule in policy.output_format_rules() {
        let treatment = if rule.is_allowed() { "allowed" } else { "refused" };
        writeln!(out, "| `{}` | {treatment} | {} |", rule.names(), cell(rule.reason()))?;
    }
    out.push_str("\nEvery other muxer is allowed.\n");
    Ok(out)
}

/// A Markdown table cell: `|` escaped, line breaks flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A short description of an option treatment for the table.
fn describe_option(treatment: &OptionTreatment) -> Result<String> {
    Ok(match treatment {
        OptionTreatment::Allowed => "allowed".to_owned(),
        OptionTreatment::Forbidden => "refused".to_owned(),
        OptionTreatment::OnlyValues(values) => {
            let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
            format!("only {}", values.join(", "))
        }
        OptionTreatment::File(file) => describe_file(*file)?,
        OptionTreatment::FilterGraph => "filter graph, checked".to_owned(),
        OptionTreatment::Format => "format name, checked".to_owned(),
        OptionTreatment::NestedOptions => "nested options, each checked".to_owned(),
        OptionTreatment::EncoderParams(params) => {
            let list = |keys: Vec<&str>| keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
            let files = list(params.files.iter().map(|f| f.key).collect());
            let refused = list(params.refused.iter().map(|(k, _)| *k).collect());
            match (files.is_empty(), refused.is_empty()) {
                (true, true) => "`key=value` settings, path-like values refused".to_owned(),
                (true, false) => format!("`key=value` settings; keys {refused} and path-like values refused"),
                (false, _) => format!(
                    "`key=value` settings; files of keys {files} resolved in the data directory; keys \
                     {refused} and path-like values refused"
                ),
            }
        }
        OptionTreatment::StreamMap => "stream map, `name:` values checked".to_owned(),
        OptionTreatment::PresetName => "preset name, no `/` or `..`".to_owned(),
        OptionTreatment::LogLevel => "log level, checked as ffmpeg reads it".to_owned(),
        other => return Err(format!("no description for option treatment {other:?}").into()),
    })
}

/// How a file-valued option or filter option uses its file, for the table.
fn describe_file(file: FileUse) -> Result<String> {
    let what = match (file.access, file.naming) {
        (Access::ReadDirectory, _) => "directory read",
        (Access::Read, Naming::Exact) => "file read",
        (Access::Read, _) => "files read",
        (Access::Write, Naming::Exact) => "file written",
        (Access::Write, Naming::Pattern) => "file pattern written",
        (Access::Write, Naming::Prefix) => "file prefix written",
        (Access::ReadWrite, Naming::Prefix) => "file prefix written and read",
        (Access::Write, Naming::Suffixed(_)) => "file written (and files named after it)",
        (Access::ReadWrite, Naming::Suffixed(_)) => "file written and read (and files named after it)",
        (Access::Append, _) => "file appended to",
        (Access::ReadWrite, _) => "file written and read",
        other => return Err(format!("no description for file use {other:?}").into()),
    };
    Ok(match file.base {
        PathBase::DataDirectory => format!("{what}, resolved in the data directory"),
        PathBase::OutputDirectory => format!("{what}, relative to the output's directory, no `..`"),
        other => return Err(format!("no description for path base {other:?}").into()),
    })
}

/// A checked filter option, for the table: its names, position and check.
fn describe_filter_option(rule: &FilterOptionRule) -> Result<String> {
    let mut names = format!("`{}`", rule.option);
    for alias in rule.aliases {
        write!(names, "/`{alias}`")?;
    }
    if let Some(position) = rule.position {
        write!(names, " (position {position})")?;
    }
    let what = match rule.check {
        FilterOptionCheck::File(file) => describe_file(file)?,
        FilterOptionCheck::SubtitlesFile => {
            "file read, resolved in the data directory, opened through `subfile:`".to_owned()
        }
        FilterOptionCheck::InputFormat => "demuxer name, checked".to_owned(),
        FilterOptionCheck::SandboxWhitelists => "set by the sandbox, refused".to_owned(),
        FilterOptionCheck::Forbidden(_) => "refused".to_owned(),
        other => return Err(format!("no description for filter option check {other:?}").into()),
    };
    Ok(format!("{names}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed `docs/security.md` holds exactly the tables the default policy generates
    /// (also checked by `cargo xtask docs --check`; `cargo xtask docs` rewrites them).
    #[test]
    fn security_doc_is_up_to_date() -> Result {
        let path = crate::root().join(PATH);
        let doc = std::fs::read_to_string(&path)?;
        assert!(
            update(&doc, &Policy::default())? == doc,
            "{PATH} is out of date with Policy::default(): run `cargo xtask docs` and commit it"
        );
        Ok(())
    }

    /// Every rule id a refusal can carry is listed in the document.
    #[test]
    fn security_doc_lists_every_rule_id() -> Result {
        let doc = std::fs::read_to_string(crate::root().join(PATH))?;
        for rule in ffmpeg_core::policy::RuleId::ALL {
            assert!(doc.contains(&format!("`{rule}`")), "{PATH} does not list the rule id `{rule}`");
        }
        Ok(())
    }

    /// A policy change shows in the tables: the generator reads the policy, not a copy.
    #[test]
    fn tables_follow_the_policy() -> Result {
        let doc = format!("intro\n{START}old\n{END}\noutro\n");
        let table = update(&doc, &Policy::default())?;
        assert!(table.starts_with("intro\n") && table.ends_with(&format!("{END}\noutro\n")));
        assert!(table.contains("| `-vstats_file` | refused |"));
        let changed = update(&doc, &Policy::default().allow_option("vstats_file"))?;
        assert!(!changed.contains("| `-vstats_file` | refused |"));
        assert!(changed.contains("| `-vstats_file` | allowed | allowed by the operator |"));
        assert!(update("no markers", &Policy::default()).is_err());
        Ok(())
    }
}
