//! Effective presence (MSC3032): per-device reports and the manual status merged into one.
