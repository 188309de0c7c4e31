//! Byte classes of the RFC 9110/9112 grammar as `[bool; 256]` lookup tables.
