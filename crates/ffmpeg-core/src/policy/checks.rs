//! Checks of option values that need no file system: restricted values, preset names,
//! `-var_stream_map` names, encoder settings, and ffmpeg's `key=value:key=value` dictionaries.

use super::{EncoderParams, KeySpelling, OptionTreatment, ParamFile, ParamSyntax};

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
        OptionTreatment::EncoderParams(params) => check_encoder_params(value, params),
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

/// One `key=value` pair of an encoder settings option as ffmpeg hands it to the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamPair {
    /// The key, as ffmpeg passes it (before the library's own spelling rules).
    pub(crate) key: String,
    /// The value as ffmpeg passes it.
    pub(crate) value: String,
}

/// Splits an encoder settings value as ffmpeg does for `syntax`. `Err` holds why ffmpeg
/// refuses the value (a dictionary that does not parse).
pub(crate) fn split_params(syntax: ParamSyntax, value: &str) -> Result<Vec<ParamPair>, String> {
    match syntax {
        ParamSyntax::Dictionary => {
            Ok(parse_dictionary(value)?.into_iter().map(|(key, value)| ParamPair { key, value }).collect())
        }
        ParamSyntax::ColonList => Ok(value.split(':').filter_map(colon_piece).collect()),
    }
}

/// One piece of `-x264opts` as `sscanf(p, "%4095[^:=]=%4095[^:]", param, val)` in
/// `libavcodec/libx264.c` reads it: a piece without `=value` means `key=1`; an empty key
/// reaches x264 as an unknown name (`None` here: it names nothing).
fn colon_piece(piece: &str) -> Option<ParamPair> {
    const MAX: usize = 4095;
    let key_end = piece.find('=').unwrap_or(piece.len());
    let key: String = piece[..key_end].chars().take(MAX).collect();
    if key.is_empty() {
        return None;
    }
    let rest = &piece[key_end..];
    let value = match rest.strip_prefix('=') {
        Some(value) if !value.is_empty() && key.len() == key_end => value.chars().take(MAX).collect(),
        _ => "1".to_owned(),
    };
    Some(ParamPair { key, value })
}

/// Rebuilds a settings value from `pairs` so that ffmpeg reads exactly these pairs back
/// (`syntax`); `None` when it cannot be written (a `:` or `=` where `-x264opts` has no escape).
pub(crate) fn join_params(syntax: ParamSyntax, pairs: &[ParamPair]) -> Option<String> {
    let mut out = String::new();
    for (i, pair) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        match syntax {
            ParamSyntax::Dictionary => {
                escape_token(&pair.key, &mut out);
                out.push('=');
                escape_token(&pair.value, &mut out);
            }
            ParamSyntax::ColonList => {
                if pair.key.contains([':', '=']) || pair.value.contains(':') || pair.value.is_empty() {
                    return None;
                }
                out.push_str(&pair.key);
                out.push('=');
                out.push_str(&pair.value);
            }
        }
    }
    Some(out)
}

/// Appends `text` escaped for `av_get_token()`: `\` before every character it treats
/// specially (`\`, `'`, the separators `=` and `:`, whitespace).
fn escape_token(text: &str, out: &mut String) {
    for c in text.chars() {
        if matches!(c, '\\' | '\'' | '=' | ':' | ' ' | '\n' | '\t' | '\r') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// What a library makes of one key of its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamKey {
    /// A key whose value names a file the sandbox resolves.
    File(&'static ParamFile),
    /// Any other key.
    Other,
}

/// Classifies `key` as `params`'s library reads it (see [`KeySpelling`]). `Err` holds why it
/// is refused: a key that names a file the sandbox does not resolve, a file key negated (the
/// library would name the file `true` or `false`), or a spelling of a file key that the
/// library does not read as that key.
pub(crate) fn classify_key(params: &EncoderParams, key: &str) -> Result<ParamKey, String> {
    let (name, negated) = library_key(params.spelling, key);
    let loose = normalize_encoder_key(key);
    let library = params.library;
    if let Some((refused, why)) = params.refused.iter().find(|(k, _)| *k == loose) {
        return Err(format!("the key `{key}` (`{refused}`) {why}"));
    }
    let file = params.files.iter().find(|file| file.key == loose);
    match file {
        None => Ok(ParamKey::Other),
        Some(file) if negated && name == file.key => Err(format!(
            "the key `{key}` negates `{}`, which names a file: {library} would name it `true` or `false`",
            file.key
        )),
        Some(file) if name == file.key => Ok(ParamKey::File(file)),
        Some(file) => Err(format!(
            "the key `{key}` is not how {library} spells `{}` (its keys are case-sensitive); write `{}`",
            file.key, file.key
        )),
    }
}

/// The name `key` has for the library after its own spelling rules, and whether a `no`
/// prefix negated it (`x264_param_parse()`, `x265_param_parse()`).
pub(crate) fn library_key(spelling: KeySpelling, key: &str) -> (String, bool) {
    match spelling {
        KeySpelling::X264 => {
            let name = key.replace('_', "-");
            match name.strip_prefix("no") {
                Some(rest) => (rest.strip_prefix('-').unwrap_or(rest).to_owned(), true),
                None => (name, false),
            }
        }
        KeySpelling::X265 => {
            let key = key.strip_prefix("--").unwrap_or(key);
            let name = if key.len() + 1 < 64 { key.replace('_', "-") } else { key.to_owned() };
            if let Some(rest) = name.strip_prefix("no-") {
                (rest.to_owned(), true)
            } else if let Some(rest) = name.strip_prefix("no") {
                (rest.to_owned(), true)
            } else {
                (name, false)
            }
        }
        _ => {
            let name = key.trim().to_ascii_lowercase().replace('_', "-");
            (name, false)
        }
    }
}

/// The file name a library takes from `value` (x264 and x265 drop one leading `=`).
pub(crate) fn param_file_name(value: &str) -> &str {
    value.strip_prefix('=').unwrap_or(value)
}

/// A non-file value that looks like a path outside the job's directory: `Err` says so.
pub(crate) fn check_param_value(key: &str, value: &str) -> Result<(), String> {
    if is_path_like(value) {
        return Err(format!("the value `{value}` of `{key}` looks like a path outside the job's directory"));
    }
    Ok(())
}

/// Encoder settings checked without a file system (inside nested options): every key that
/// names a file is refused, and every path-like value. Both readings of the string are
/// checked (`av_dict_parse_string()` and a plain split at every `:`), so that no reading can
/// reach a refused key.
fn check_encoder_params(value: &str, params: &EncoderParams) -> Result<(), String> {
    let mut pairs = split_params(ParamSyntax::ColonList, value)?;
    if let Ok(parsed) = split_params(ParamSyntax::Dictionary, value) {
        pairs.extend(parsed);
    }
    for pair in &pairs {
        if let ParamKey::File(file) = classify_key(params, &pair.key)?
            && !file.unless.is_keyword(&pair.value)
        {
            return Err(format!("the key `{}` names a file", pair.key));
        }
        check_param_value(&pair.key, &pair.value)?;
    }
    Ok(())
}

/// Encoder keys compared loosely (the policy's view of every spelling a library could read
/// as the key: `_` as `-`, lower case, without a leading `--` or a `no-`/`no` prefix).
fn normalize_encoder_key(key: &str) -> String {
    let key = key.trim().to_ascii_lowercase().replace('_', "-");
    let key = key.strip_prefix("--").unwrap_or(&key);
    let stripped = key.strip_prefix("no-").or_else(|| key.strip_prefix("no")).unwrap_or(key);
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
pub(crate) fn get_token(input: &mut &str, terminators: &str) -> String {
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

    fn params_of(option: &str) -> &'static EncoderParams {
        tables::OPTIONS
            .iter()
            .find_map(|(name, t, _)| match t {
                OptionTreatment::EncoderParams(params) if *name == option => Some(*params),
                _ => None,
            })
            .expect("an encoder settings option")
    }

    #[test]
    fn encoder_params_inside_nested_options_refuse_every_file() {
        let check = |v: &str| check_encoder_params(v, params_of("x264-params"));
        assert!(check("keyint=60:min-keyint=30:scenecut=0").is_ok());
        assert!(check("sar=16/9").is_ok());
        assert!(check("cqm=flat").is_ok());
        assert!(check("stats=x.log").is_err());
        assert!(check("STATS=x.log").is_err());
        assert!(check("dump_yuv=x.yuv").is_err());
        assert!(check("cqm=matrix.cfg").is_err());
        assert!(check("keyint=60:no-stats=1").is_err());
        assert!(check("foo=/etc/passwd").is_err());
        assert!(check("foo=a/../../x").is_err());
        assert!(check(r"keyint=1\:stats=x").is_err());
        assert!(check("keyint='1:stats=x'").is_err());
    }

    #[test]
    fn keys_are_read_as_the_library_reads_them() {
        let x264 = params_of("x264-params");
        let x265 = params_of("x265-params");
        let file = |params, key: &str| match classify_key(params, key) {
            Ok(ParamKey::File(file)) => Ok(file.key),
            Ok(ParamKey::Other) => Ok(""),
            Err(why) => Err(why),
        };
        assert_eq!(file(x264, "stats"), Ok("stats"));
        assert_eq!(file(x264, "dump_yuv"), Ok("dump-yuv"));
        assert_eq!(file(x264, "keyint"), Ok(""));
        assert!(file(x264, "no-stats").is_err_and(|why| why.contains("`true` or `false`")));
        assert!(file(x264, "nostats").is_err());
        assert!(file(x264, "Stats").is_err_and(|why| why.contains("case-sensitive")));
        assert!(file(x264, "opencl_clbin").is_err_and(|why| why.contains("OpenCL")));
        assert_eq!(file(x265, "--stats"), Ok("stats"));
        assert_eq!(file(x265, "analysis_save"), Ok("analysis-save"));
        assert!(file(x265, "zonefile").is_err_and(|why| why.contains("command-line")));
        assert!(file(x265, "no-csv").is_err());
    }

    #[test]
    fn settings_split_and_join_as_ffmpeg_reads_them() {
        let pair = |k: &str, v: &str| ParamPair { key: k.to_owned(), value: v.to_owned() };
        // `-x264opts`: every `:` splits; a key alone means `1`; `=` inside a value stays.
        assert_eq!(
            split_params(ParamSyntax::ColonList, "pass=1:stats=a=b:fast-pskip::=x"),
            Ok(vec![pair("pass", "1"), pair("stats", "a=b"), pair("fast-pskip", "1")])
        );
        assert_eq!(split_params(ParamSyntax::ColonList, "stats=:x"), Ok(vec![pair("stats", "1"), pair("x", "1")]));
        let pairs = vec![pair("stats", "/d/a:b c.log"), pair("zones", "0,10,b=2")];
        let joined = join_params(ParamSyntax::Dictionary, &pairs).unwrap_or_default();
        assert_eq!(joined, r"stats=/d/a\:b\ c.log:zones=0,10,b\=2");
        assert_eq!(split_params(ParamSyntax::Dictionary, &joined), Ok(pairs.clone()));
        assert_eq!(join_params(ParamSyntax::ColonList, &pairs), None, "no escape for `:`");
        assert_eq!(join_params(ParamSyntax::ColonList, &pairs[1..]).as_deref(), Some("zones=0,10,b=2"));
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
