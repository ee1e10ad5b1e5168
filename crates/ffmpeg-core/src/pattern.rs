//! File-name patterns as ffmpeg's muxers and demuxers expand them: printf-style `%d`/`%03d`
//! frame numbers (image2, segment, HLS `-hls_segment_filename`; `%%` is a literal `%`), other
//! `%x` conversions (strftime names with `-strftime 1`), and DASH `$Number$`-style templates.
//!
//! ```
//! use ffmpeg_core::pattern;
//!
//! assert!(pattern::matches("thumbs/t%03d.png", "thumbs/t001.png"));
//! assert!(!pattern::matches("t%03d.png", "t.png"));
//! assert_eq!(pattern::example("in%03d.png"), "in001.png");
//! ```

/// One piece of a file-name pattern.
#[derive(Debug, PartialEq)]
enum Piece {
    Literal(u8),
    /// `%d`, `%03d`: one or more digits (the width is what `%03d` pads to).
    Digits {
        /// Zero-padded width, 0 for `%d`.
        width: usize,
    },
    /// Any other `%x` (strftime) or a `$...$` DASH template: any run of characters.
    Any,
}

fn pieces(pattern: &str) -> Vec<Piece> {
    let p = pattern.as_bytes();
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'%' if p.get(i + 1) == Some(&b'%') => {
                out.push(Piece::Literal(b'%'));
                i += 2;
            }
            b'%' => {
                let width_len = p[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                let width = pattern[i + 1..i + 1 + width_len].parse().unwrap_or(0);
                match p.get(i + 1 + width_len) {
                    Some(b'd') => out.push(Piece::Digits { width }),
                    Some(_) => out.push(Piece::Any),
                    None => out.push(Piece::Literal(b'%')),
                }
                i += width_len + 2;
            }
            b'$' => match p[i + 1..].iter().position(|c| *c == b'$') {
                Some(0) => {
                    out.push(Piece::Literal(b'$'));
                    i += 2;
                }
                Some(end) => {
                    out.push(Piece::Any);
                    i += end + 2;
                }
                None => {
                    out.push(Piece::Literal(b'$'));
                    i += 1;
                }
            },
            c => {
                out.push(Piece::Literal(c));
                i += 1;
            }
        }
    }
    out
}

/// Does the file name `name` match `pattern` (printf `%d`/`%03d` digits, `%%`, other `%x`
/// and DASH `$...$` templates as wildcards)? Dynamic programming over (piece, byte): time
/// proportional to `pattern.len() * name.len()` (quadratic, not linear, for inputs of similar
/// size; no backtracking), memory to `name.len()`, whatever the pattern, so a hostile pattern
/// cannot stall a worker.
pub fn matches(pattern: &str, name: &str) -> bool {
    // Fast paths (a queue's claim compares many footprints): a name starts with the pattern's
    // literal head, and a plain name matches only itself.
    let head = literal_head(pattern);
    if !name.as_bytes().starts_with(head) {
        return false;
    }
    if head.len() == pattern.len() {
        return pattern == name;
    }
    let pieces = pieces(pattern);
    let n = name.as_bytes();
    // reach[j]: the pieces so far can consume exactly n[..j].
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for piece in &pieces {
        let mut next = vec![false; n.len() + 1];
        for j in 0..=n.len() {
            match piece {
                Piece::Literal(c) => next[j] = j > 0 && reach[j - 1] && n[j - 1] == *c,
                Piece::Digits { .. } => {
                    next[j] = j > 0 && n[j - 1].is_ascii_digit() && (reach[j - 1] || next[j - 1]);
                }
                Piece::Any => next[j] = reach[j] || (j > 0 && next[j - 1]),
            }
        }
        reach = next;
    }
    reach[n.len()]
}

/// Whether `path` is a pattern at all (contains a `%` conversion or a `$...$` template).
pub fn is_pattern(path: &str) -> bool {
    // Only a `%` or a `$` starts a conversion or a template.
    literal_head(path).len() < path.len() && pieces(path).iter().any(|p| !matches!(p, Piece::Literal(_)))
}

/// The bytes of `pattern` before its first `%` or `$`: literal, so every name it matches
/// starts with them (and so does the pattern itself, read as a name).
fn literal_head(pattern: &str) -> &[u8] {
    let bytes = pattern.as_bytes();
    &bytes[..bytes.iter().position(|c| matches!(c, b'%' | b'$')).unwrap_or(bytes.len())]
}

/// One concrete name the pattern stands for: frame number 1 (padded to the pattern's width)
/// for `%d`, `x` for other conversions and templates.
pub fn example(pattern: &str) -> String {
    let mut out = Vec::with_capacity(pattern.len());
    for piece in pieces(pattern) {
        match piece {
            Piece::Literal(c) => out.push(c),
            Piece::Digits { width } => out.extend(format!("{:0width$}", 1, width = width.min(32)).bytes()),
            Piece::Any => out.push(b'x'),
        }
    }
    // Only ASCII was put between the pattern's own bytes, which came from a `&str`.
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes one conversion of a pattern is counted as by [`longest_len`]: the digits of the largest
/// 32-bit number (frame and segment numbers are C `int`s in ffmpeg's muxers; a strftime
/// `%s` has 10 digits until the year 2286, `%Y` 4; a DASH `$Number$` or `$RepresentationID$`
/// stays well below it).
pub const CONVERSION_BYTES: usize = 10;

/// The length in bytes of the longest name that `pattern` reasonably stands for: a `%03d` at
/// its width or [`CONVERSION_BYTES`], whichever is more; any other conversion or `$...$`
/// template at [`CONVERSION_BYTES`]; `%%` as one byte. What a muxer writes under a name that
/// must fit a file system's or a bucket's limits.
///
/// ```
/// use ffmpeg_core::pattern::longest_len;
///
/// assert_eq!(longest_len("seg%d.ts"), "seg".len() + 10 + ".ts".len());
/// assert_eq!(longest_len("t%012d.png"), 1 + 12 + 4);
/// assert_eq!(longest_len("100%%.txt"), "100%.txt".len());
/// assert_eq!(longest_len("plain.mp4"), 9);
/// ```
pub fn longest_len(pattern: &str) -> usize {
    pieces(pattern)
        .iter()
        .map(|piece| match piece {
            Piece::Literal(_) => 1,
            Piece::Digits { width } => (*width).max(CONVERSION_BYTES),
            Piece::Any => CONVERSION_BYTES,
        })
        .sum()
}

/// Could the two paths (either of them a pattern) name the same file? Exact: `true` exactly
/// when some name matches both patterns (`%sfoo` and `bar%s` both match `barfoo`), or when one
/// of them, read as a plain name, matches the other. Each `%`/`$` wildcard may stand for any
/// text, `/` included, so this errs towards `true` for full paths. Quadratic in the lengths.
///
/// ```
/// use ffmpeg_core::pattern::may_overlap;
///
/// assert!(may_overlap("%sfoo", "bar%s"));
/// assert!(may_overlap("seg%03d.ts", "seg1%d.ts"));
/// assert!(!may_overlap("seg%03d.ts", "seg%03d.m4s"));
/// ```
pub fn may_overlap(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    // Fast paths (a queue's claim compares many footprints): every name either one matches,
    // and either one read as a name, starts with its literal head, so the two heads must agree
    // as far as the shorter goes; two plain names overlap only when they are the same.
    let (head_a, head_b) = (literal_head(a), literal_head(b));
    let common = head_a.len().min(head_b.len());
    if head_a[..common] != head_b[..common] || (head_a.len() == a.len() && head_b.len() == b.len()) {
        return false;
    }
    matches(a, b) || matches(b, a) || intersects(&pieces(a), &pieces(b))
}

/// Whether some name matches both piece lists: reachability in the product of their automata.
/// State `k` of a list means "pieces `..k` consumed"; `Digits` at `k - 1` lets state `k` take
/// further digits, `Any` at `k` lets state `k` take any byte or skip to `k + 1`.
fn intersects(a: &[Piece], b: &[Piece]) -> bool {
    /// What a consuming move accepts.
    #[derive(Clone, Copy)]
    enum Class {
        Byte(u8),
        Digit,
        Any,
    }
    fn moves(p: &[Piece], k: usize) -> Vec<(Class, usize)> {
        let mut out = Vec::with_capacity(2);
        match p.get(k) {
            Some(Piece::Literal(c)) => out.push((Class::Byte(*c), k + 1)),
            Some(Piece::Digits { .. }) => out.push((Class::Digit, k + 1)),
            Some(Piece::Any) => out.push((Class::Any, k)),
            None => {}
        }
        if k > 0 && matches!(p[k - 1], Piece::Digits { .. }) {
            out.push((Class::Digit, k));
        }
        out
    }
    fn closure(p: &[Piece], mut k: usize) -> Vec<usize> {
        let mut out = vec![k];
        while let Some(Piece::Any) = p.get(k) {
            k += 1;
            out.push(k);
        }
        out
    }
    fn compatible(x: Class, y: Class) -> bool {
        match (x, y) {
            (Class::Any, _) | (_, Class::Any) | (Class::Digit, Class::Digit) => true,
            (Class::Byte(c), Class::Digit) | (Class::Digit, Class::Byte(c)) => c.is_ascii_digit(),
            (Class::Byte(c), Class::Byte(d)) => c == d,
        }
    }
    let width = b.len() + 1;
    let mut seen = vec![false; (a.len() + 1) * width];
    let mut stack = Vec::new();
    for i in closure(a, 0) {
        for j in closure(b, 0) {
            stack.push((i, j));
        }
    }
    while let Some((i, j)) = stack.pop() {
        if std::mem::replace(&mut seen[i * width + j], true) {
            continue;
        }
        if i == a.len() && j == b.len() {
            return true;
        }
        for (x, next_i) in moves(a, i) {
            for (y, next_j) in moves(b, j) {
                if compatible(x, y) {
                    for ci in closure(a, next_i) {
                        for cj in closure(b, next_j) {
                            if !seen[ci * width + cj] {
                                stack.push((ci, cj));
                            }
                        }
                    }
                }
            }
        }
    }
    false
}

/// One variant stream of an HLS output (`-var_stream_map`): what `%v` in its file names
/// stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsVariant {
    /// 0-based position in `-var_stream_map`.
    pub index: usize,
    /// The entry's `name:` value, if it has one.
    pub name: Option<String>,
}

/// The variant streams of an HLS output with `-var_stream_map value` (`None`: one variant,
/// index 0). As ffmpeg 5.1's `parse_variant_stream_mapstring()` in `libavformat/hlsenc.c`:
/// entries are separated by runs of spaces and tabs, each a `,`-separated list of `key:value`.
///
/// ```
/// use ffmpeg_core::pattern::{hls_variants, expand_hls_variant};
///
/// let variants = hls_variants(Some("v:0,name:hd  v:1"));
/// assert_eq!(expand_hls_variant("hls/%v/i.m3u8", &variants[0]), "hls/hd/i.m3u8");
/// assert_eq!(expand_hls_variant("hls/%v/i.m3u8", &variants[1]), "hls/1/i.m3u8");
/// assert_eq!(expand_hls_variant("hls/%03v_%%v%03d.ts", &variants[1]), "hls/001_%%v%03d.ts");
/// assert_eq!(hls_variants(None).len(), 1);
/// ```
pub fn hls_variants(var_stream_map: Option<&str>) -> Vec<HlsVariant> {
    let Some(map) = var_stream_map else { return vec![HlsVariant { index: 0, name: None }] };
    let variants: Vec<HlsVariant> = map
        .split([' ', '\t'])
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            let name = entry.split(',').find_map(|pair| {
                let (key, value) = pair.split_once(':')?;
                key.eq_ignore_ascii_case("name").then(|| value.to_owned())
            });
            HlsVariant { index, name }
        })
        .collect();
    if variants.is_empty() { vec![HlsVariant { index: 0, name: None }] } else { variants }
}

/// Does `text` hold the HLS muxer's variant placeholder `%v` (`%%` being a literal `%`)?
pub fn has_hls_variant(text: &str) -> bool {
    // A replacement removes a `%`, and puts none back.
    expand_hls_variant(text, &HlsVariant { index: 0, name: None }) != text
}

/// `text` with `%v` replaced for `variant`, as the HLS muxer's `format_name()` does it
/// (`replace_str_data_in_filename` with a name, `replace_int_data_in_filename` with the index,
/// which also takes a width: `%03v` gives `001`). `%%` and every other conversion (`%03d`,
/// strftime) are kept as they are, for the segment numbering that follows.
pub fn expand_hls_variant(text: &str, variant: &HlsVariant) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'%') {
            i += 2;
            continue;
        }
        let digits = bytes[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if bytes.get(i + 1 + digits) != Some(&b'v') || (digits > 0 && variant.name.is_some()) {
            i += 1;
            continue;
        }
        out.push_str(&text[copied..i]);
        match &variant.name {
            Some(name) => out.push_str(name),
            None => {
                let width: usize = text[i + 1..i + 1 + digits].parse().unwrap_or(0);
                out.push_str(&format!("{:0width$}", variant.index, width = width.min(32)));
            }
        }
        i += digits + 2;
        copied = i;
    }
    out.push_str(&text[copied..]);
    out
}

/// Does the file name `name` match the shell wildcard pattern `glob` (`*`, `?`, `[abc]`,
/// `[a-z]`, `[!a]`/`[^a]`), as glibc's `fnmatch` matches one path component for `glob()`
/// without flags (ffmpeg's image2 demuxer with `-pattern_type glob`)? No escapes (`\` is an
/// ordinary character here; the sandbox refuses it), and a leading `.` of `name` is never
/// matched by a wildcard or a bracket expression. A `[` without its `]` is literal.
/// Dynamic programming: time `glob.len() * name.len()`, no backtracking.
///
/// ```
/// use ffmpeg_core::pattern::glob_matches;
///
/// assert!(glob_matches("*.png", "img001.png"));
/// assert!(glob_matches("img[0-9][!a]?.png", "img01x.png"));
/// assert!(!glob_matches("*.png", ".hidden.png"));
/// assert!(!glob_matches("img?.png", "img.png"));
/// ```
pub fn glob_matches(glob: &str, name: &str) -> bool {
    #[derive(Debug)]
    enum Tok {
        Byte(u8),
        Any,
        Star,
        Class { negated: bool, items: Vec<(u8, u8)> },
    }
    let g = glob.as_bytes();
    let mut toks = Vec::with_capacity(g.len());
    let mut i = 0;
    while i < g.len() {
        match g[i] {
            b'*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            b'?' => {
                toks.push(Tok::Any);
                i += 1;
            }
            b'[' => {
                let mut j = i + 1;
                let negated = matches!(g.get(j), Some(b'!' | b'^'));
                if negated {
                    j += 1;
                }
                let start = j;
                // A `]` right after `[` or `[!` is a member.
                let mut items = Vec::new();
                let mut closed = None;
                while j < g.len() {
                    if g[j] == b']' && j > start {
                        closed = Some(j);
                        break;
                    }
                    if j + 2 < g.len() && g[j + 1] == b'-' && g[j + 2] != b']' {
                        items.push((g[j], g[j + 2]));
                        j += 3;
                    } else {
                        items.push((g[j], g[j]));
                        j += 1;
                    }
                }
                match closed {
                    Some(end) => {
                        toks.push(Tok::Class { negated, items });
                        i = end + 1;
                    }
                    None => {
                        toks.push(Tok::Byte(b'['));
                        i += 1;
                    }
                }
            }
            c => {
                toks.push(Tok::Byte(c));
                i += 1;
            }
        }
    }
    let n = name.as_bytes();
    if n.first() == Some(&b'.') && !matches!(toks.first(), Some(Tok::Byte(b'.'))) {
        return false;
    }
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for tok in &toks {
        let mut next = vec![false; n.len() + 1];
        for j in 0..=n.len() {
            next[j] = match tok {
                Tok::Star => reach[j] || (j > 0 && next[j - 1]),
                _ if j == 0 => false,
                Tok::Byte(c) => reach[j - 1] && n[j - 1] == *c,
                Tok::Any => reach[j - 1],
                Tok::Class { negated, items } => {
                    let c = n[j - 1];
                    reach[j - 1] && (items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated)
                }
            };
        }
        reach = next;
    }
    reach[n.len()]
}

/// A shell wildcard pattern as a pattern of this module's syntax that matches at least the
/// same names (`*`, `?` and `[...]` become "any text"; `%` and `$` are escaped), for
/// footprints: what a glob input may read.
///
/// ```
/// use ffmpeg_core::pattern::{glob_to_pattern, matches};
///
/// assert!(matches(&glob_to_pattern("img[0-9]?*.png"), "img1xyz.png"));
/// assert!(matches(&glob_to_pattern("100%-*.png"), "100%-a.png"));
/// ```
pub fn glob_to_pattern(glob: &str) -> String {
    let g = glob.as_bytes();
    let mut out = Vec::with_capacity(g.len() + 4);
    let mut i = 0;
    while i < g.len() {
        match g[i] {
            b'*' | b'?' => {
                out.extend_from_slice(b"%s");
                i += 1;
            }
            b'[' => {
                // As `glob_matches` reads it: `[`, an optional `!`/`^`, then a `]` closes the
                // class only after at least one member.
                let mut j = i + 1;
                if matches!(g.get(j), Some(b'!' | b'^')) {
                    j += 1;
                }
                match g[j.min(g.len())..].iter().skip(1).position(|c| *c == b']') {
                    Some(offset) => {
                        out.extend_from_slice(b"%s");
                        i = j + 1 + offset + 1;
                    }
                    None => {
                        out.push(b'[');
                        i += 1;
                    }
                }
            }
            b'%' => {
                out.extend_from_slice(b"%%");
                i += 1;
            }
            b'$' => {
                out.extend_from_slice(b"$$");
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Only ASCII was put between the glob's own bytes, which came from a `&str`.
    String::from_utf8_lossy(&out).into_owned()
}
