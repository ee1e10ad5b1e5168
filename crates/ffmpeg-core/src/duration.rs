//! Input durations from the stderr banner, expected output duration, percent. PENDING (helper).
