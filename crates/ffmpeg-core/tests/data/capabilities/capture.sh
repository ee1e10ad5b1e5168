#!/bin/sh
# Regenerates the captures in this directory: the text that `jobs::probe::probe_capabilities`
# reads from ffmpeg, here from Debian 12's ffmpeg 5.1. Everything is kept verbatim except
# `help_full.txt`, which is trimmed deterministically from ~1.1 MB to ~380 KB (see `trim`).
# Usage: sh capture.sh   (from this directory; FFMPEG=/path/to/ffmpeg to use another binary)
set -eu
ff() { "${FFMPEG:-ffmpeg}" -hide_banner "$@" < /dev/null; }

ff -version | head -n 1 > version.txt
ff -muxers > muxers.txt
ff -demuxers > demuxers.txt
ff -encoders > encoders.txt
ff -decoders > decoders.txt
ff -filters > filters.txt

# `-h full` prints ffmpeg's own options, then the AVOptions of AVCodecContext and every codec,
# AVFormatContext and every (de)muxer and protocol, SWScaler and SWResampler (all usable on the
# command line), then those of AVFilter and every filter, then of every bitstream filter (not
# usable on the command line). The trimmed copy keeps:
# - every line before the first `AVFilter AVOptions:` header, except the named constants of
#   enum and flags options (lines indented by 4 or more spaces) outside the first
#   (`AVCodecContext`) section: each option line, hence each option name, stays;
# - from `AVFilter AVOptions:` on, only the sections named in `keep` below, verbatim.
trim() {
    awk '
    BEGIN {
        keep["AVFilter"] = 1; keep["scale(2ref)"] = 1; keep["SWScaler"] = 1; keep["acompressor/sidechaincompress"] = 1
        keep["aresample"] = 1; keep["SWResampler"] = 1; keep["h264_metadata_bsf"] = 1
    }
    /^[^ -].* AVOptions:$/ {
        headers++
        name = $0; sub(/ AVOptions:$/, "", name)
        if (name == "AVFilter") filters = 1
        keeping = !filters || (name in keep)
    }
    filters && !keeping { next }
    !filters && headers > 1 && /^    / { next }
    { print }
    '
}
ff -h full | trim > help_full.txt
