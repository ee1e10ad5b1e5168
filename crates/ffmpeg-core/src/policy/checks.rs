//! Checks of option values that need no file system: restricted values, preset names,
//! `-var_stream_map` names, encoder settings, and ffmpeg's `key=value:key=value` dictionaries.

use super::OptionTreatment;

/// Checks the value of an option whose treatment restricts values; `Err` holds why it is
/// refused. Treatments that need the sandbox (files, graphs, formats, nested options) pass.
pub(crate) fn check_value(treatment: OptionTreatment, value: &str) -> Result<(), String> {
    match treatment {
        OptionTreatment::OnlyValues(values) => {
            if values.iter().any(|v| v.eq_ignore_ascii_case(value)) {
                Ok(())
            } else {
                let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
                Err(format!("the value `{value}` is not allowed (only {})", values.join(", ")))
            }
        }
        OptionTreatment::PresetName => {
            if value.contains(['/', '\\']) || value.contains("..") {
                Err("a preset name may not contain `/`, `\\` or `..`".to_owned())
            } else {
                Ok(())
            }
        }
        OptionTreatment::StreamMap => check_stream_map(value),
        OptionTreatment::EncoderParams(file_keys) => check_encoder_params(value, file_keys),
        OptionTreatment::LogLevel => crate::log::LogSettings::default().apply(value).map_err(|error| error.to_string()),
        _ => Ok(()),
    }
}

/// `-var_stream_map`: entries separated by spaces or tabs, each a `,`-separated list of
/// `key:value` (`hlsenc.c`, `parse_variant_stream_mapstring()`); `name:` values replace `%v`
/// in file names.
fn check_stream_map(value: &str) -> Result<(), String> {
    let names = value.split([' ', '\t']).flat_map(|entry| entry.split(',')).filter_map(|pair| {
        let (key, name) = pair.split_once(':')?;
        key.eq_ignore_ascii_case("name").then_some(name)
    });
    for name in names {
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(format!(
                "the stream name `{name}` would become part of file names: use only ASCII \
                 letters, digits, `_` and `-`"
            ));
        }
    }
    Ok(())
}

/// Encoder settings: checked both as ffmpeg's `av_dict_parse_string(value, "=", ":")` reads
/// them (with `\` and `'` escapes) and as a plain split at every `:` (how `-x264opts` reads
/// them, with `sscanf`), so that no reading of the string can reach a refused key.
fn check_encoder_params(value: &str, file_keys: &[&str]) -> Result<(), String> {
    let mut pairs: Vec<(String, String)> = value
        .split(':')
        .map(|piece| match piece.split_once('=') {
            Some((key, value)) => (key.trim().to_owned(), value.to_owned()),
            None => (piece.trim().to_owned(), String::new()),
        })
        .collect();
    if let Ok(parsed) = parse_dictionary(value) {
        pairs.extend(parsed);
    }
    for (key, value) in &pairs {
        let normalized = normalize_encoder_key(key);
        if file_keys.contains(&normalized.as_str()) {
            return Err(format!("the key `{key}` names a file"));
        }
        if is_path_like(value) {
            return Err(format!("the value `{value}` of `{key}` looks like a path outside the job's directory"));
        }
    }
    Ok(())
}

/// Encoder keys as x264 and x265 compare them (`x264_param_parse()`: `_` is `-`, a `no-` or
/// `no` prefix negates), in lower case.
fn normalize_encoder_key(key: &str) -> String {
    let key = key.trim().to_ascii_lowercase().replace('_', "-");
    let stripped = key.strip_prefix("no-").or_else(|| key.strip_prefix("no")).unwrap_or(&key);
    stripped.to_owned()
}

/// An absolute path, a home-relative one, or one with a `..` component.
fn is_path_like(value: &str) -> bool {
    let value = value.trim();
    value.starts_with('/') || value.starts_with('~') || value.split(['/', '\\']).any(|part| part.trim() == "..")
}

/// Parses a `key=value:key=value` list as `av_dict_parse_string(value, "=", ":", 0)` does
/// (`libavutil/dict.c`), each key and value read by `av_get_token()`: `\` escapes the next
/// character, `'...'` quotes, surrounding whitespace is dropped. `Err` where ffmpeg fails
/// (a pair without `=`, an empty key or value).
pub(crate) fn parse_dictionary(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let key = get_token(&mut rest, "=");
        let Some(after) = rest.strip_prefix('=') else {
            return Err(format!("`{key}` has no `=value`"));
        };
        rest = after;
        let val = get_token(&mut rest, ":");
        if key.is_empty() || val.is_empty() {
            return Err("an empty key or value".to_owned());
        }
        pairs.push((key, val));
        if let Some(after) = rest.strip_prefix(':') {
            rest = after;
        }
    }
    Ok(pairs)
}

/// `av_get_token()` from `libavutil/avstring.c`: reads up to an unescaped, unquoted character
/// of `terminators`, advancing `input` to it.
fn get_token(input: &mut &str, terminators: &str) -> String {
    const WHITESPACE: &[char] = &[' ', '\n', '\t', '\r'];
    let mut chars = input.trim_start_matches(WHITESPACE).char_indices().peekable();
    let start = input.len() - input.trim_start_matches(WHITESPACE).len();
    let text = &input[start..];
    let mut out = String::new();
    // Length of `out` that trailing-whitespace trimming may not cut into.
    let mut keep = 0;
    let mut end = text.len();
    while let Some((i, c)) = chars.next() {
        if terminators.contains(c) {
            end = i;
            break;
        }
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => {
                    out.push(escaped);
                    keep = out.len();
                }
                None => out.push('\\'),
            },
            '\'' => {
                let mut closed = false;
                for (_, quoted) in chars.by_ref() {
                    if quoted == '\'' {
                        closed = true;
                        break;
                    }
                    out.push(quoted);
                }
                if closed {
                    keep = out.len();
                }
            }
            c => out.push(c),
        }
    }
    let trimmed = out.trim_end_matches(WHITESPACE).len().max(keep);
    out.truncate(trimmed);
    *input = &text[end..];
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tables;

    #[test]
    fn dictionary_parsing_follows_av_dict_parse_string() {
        let ok = |s: &str| parse_dictionary(s).unwrap_or_default();
        assert_eq!(
            ok("movflags=+faststart:brand=mp42"),
            [("movflags".to_owned(), "+faststart".to_owned()), ("brand".to_owned(), "mp42".to_owned())]
        );
        assert_eq!(ok(r"a=b\:c"), [("a".to_owned(), "b:c".to_owned())]);
        assert_eq!(ok("a='x:y' "), [("a".to_owned(), "x:y".to_owned())]);
        assert_eq!(ok(" a = b "), [("a".to_owned(), "b".to_owned())]);
        assert_eq!(ok(r"a=\ "), [("a".to_owned(), " ".to_owned())]);
        assert!(parse_dictionary("novalue").is_err());
        assert!(parse_dictionary("a=").is_err());
        assert!(parse_dictionary("=b").is_err());
    }

    #[test]
    fn encoder_params() {
        let keys = tables::OPTIONS
            .iter()
            .find_map(|(name, t, _)| match t {
                OptionTreatment::EncoderParams(keys) if *name == "x264-params" => Some(*keys),
                _ => None,
            })
            .unwrap_or_default();
        let check = |v: &str| check_encoder_params(v, keys);
        assert!(check("keyint=60:min-keyint=30:scenecut=0").is_ok());
        assert!(check("sar=16/9").is_ok());
        assert!(check("stats=x.log").is_err());
        assert!(check("STATS=x.log").is_err());
        assert!(check("dump_yuv=x.yuv").is_err());
        assert!(check("keyint=60:no-stats=1").is_err());
        assert!(check("foo=/etc/passwd").is_err());
        assert!(check("foo=a/../../x").is_err());
        // `-x264opts` splits at every `:`, escapes or not.
        assert!(check(r"keyint=1\:stats=x").is_err());
        assert!(check("keyint='1:stats=x'").is_err());
    }

    #[test]
    fn stream_maps() {
        assert!(check_stream_map("v:0,a:0,name:hd v:1,a:1,name:sd-2").is_ok());
        assert!(check_stream_map("v:0,a:0 v:1,a:1").is_ok());
        assert!(check_stream_map("v:0,name:../..").is_err());
        assert!(check_stream_map("v:0,NAME:a/b").is_err());
        assert!(check_stream_map("v:0,name:").is_err());
    }

    #[test]
    fn tables_are_consistent() {
        let mut names: Vec<&str> = tables::OPTIONS.iter().map(|(n, _, _)| *n).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate option rows");
        for (name, treatment, reason) in tables::OPTIONS {
            assert_eq!(
                *treatment == OptionTreatment::Allowed,
                reason.is_empty(),
                "{name}: allowed rows have no reason, the others have one"
            );
        }
        let mut filters: Vec<&str> = tables::FILTERS.iter().map(|(n, _, _)| *n).collect();
        let count = filters.len();
        filters.sort_unstable();
        filters.dedup();
        assert_eq!(filters.len(), count, "duplicate filter rows");
        for names in tables::ALLOWED_DEMUXERS {
            assert!(!tables::FORBIDDEN_DEMUXERS.iter().any(|(n, _)| n == names), "{names}");
        }
        for (names, _) in tables::DEMUXER_NOTES {
            assert!(tables::ALLOWED_DEMUXERS.contains(names), "{names}");
        }
    }
}
