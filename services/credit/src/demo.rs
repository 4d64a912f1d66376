//! `serve --demo`: customers whose histories land in each decision.
