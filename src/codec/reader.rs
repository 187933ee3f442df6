//! Reader (STUB)
