#!/bin/sh
# Regenerates the ffmpeg captures in this directory (stdout of `-progress pipe:1 -nostats` and
# stderr). Captured with ffmpeg 5.1 (Debian 12). The media is generated from lavfi sources in a
# temporary directory and deleted; only the text output is kept.
# Usage: sh capture.sh   (from this directory)
set -eu
out=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
ff() { ffmpeg -nostdin -hide_banner "$@"; }

# Inputs: a 3 s mp4 (video + audio), its mkv remux (stream DURATION tags), a 5 s mp3, and a
# 3 s mp4 with B-frames (stream copy starts at a negative time).
ff -loglevel error -f lavfi -i testsrc=duration=3:size=320x240:rate=25 \
   -f lavfi -i sine=frequency=440:duration=3 -c:v libx264 -preset ultrafast -c:a aac -y in.mp4
ff -loglevel error -i in.mp4 -c copy -y in.mkv
ff -loglevel error -f lavfi -i sine=frequency=220:duration=5 -c:a libmp3lame -y long.mp3
ff -loglevel error -f lavfi -i testsrc=duration=3:size=320x240:rate=25 -c:v libx264 -y inb.mp4

# Two lavfi inputs (Duration: N/A), libx264 + aac.
ff -progress pipe:1 -nostats -f lavfi -i testsrc=duration=2:size=160x120:rate=25 \
   -f lavfi -i sine=duration=2 -c:v libx264 -c:a aac -y o.mp4 \
   > "$out/progress_x264.txt" 2> "$out/banner_x264.txt"

# A file input with input -ss and output -t, several blocks.
ff -stats_period 0.05 -progress pipe:1 -nostats -ss 0.5 -i "file:$tmp/in.mp4" -t 2 \
   -c:v libx264 -preset veryslow -c:a aac -y "file:$tmp/o2.mp4" \
   > "$out/progress_file.txt" 2> "$out/banner_file.txt"

# Decode only, to the null muxer (total_size=N/A, bitrate=N/A).
ff -stats_period 0.05 -progress pipe:1 -nostats -i "file:$tmp/in.mkv" -f null - \
   > "$out/progress_null.txt" 2> "$out/banner_null.txt"

# Two inputs, two outputs, -map and -shortest.
ff -stats_period 0.1 -progress pipe:1 -nostats -i "file:$tmp/in.mp4" -i "file:$tmp/long.mp3" \
   -map 0:v -map 1:a -shortest -c:v libx264 -preset medium -c:a aac -y "file:$tmp/o3.mp4" \
   -map 1:a -c:a libmp3lame -frames:a 50 -y "file:$tmp/o4.mp3" \
   > "$out/progress_two_inputs.txt" 2> "$out/banner_two_inputs.txt"

# Audio only (no frame/fps keys).
ff -stats_period 0.01 -progress pipe:1 -nostats -i "file:$tmp/long.mp3" -c copy -y "file:$tmp/c.mp3" \
   > "$out/progress_audio_copy.txt" 2> "$out/banner_audio_copy.txt"

# Stream copy of B-frames: out_time starts negative.
ff -stats_period 0.001 -progress pipe:1 -nostats -i "file:$tmp/inb.mp4" -c copy -y "file:$tmp/c.mkv" \
   > "$out/progress_copy_negative.txt" 2> "$out/banner_copy_negative.txt"

# The same two inputs with the `level` flag at verbose: `[info] ` before every banner line,
# `[name @ 0x...] [verbose] ` context lines between them (stderr only).
ff -loglevel level+verbose -progress pipe:1 -nostats -i in.mp4 -i long.mp3 -map 0:v -map 1:a \
   -c:v libx264 -preset ultrafast -c:a aac -shortest -y out.mp4 \
   > /dev/null 2> "$out/banner_levels.txt"
