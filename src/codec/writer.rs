//! Writer (STUB)
