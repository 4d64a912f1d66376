//! CSV the platform writes (statements, reports, error sheets) is opened in
//! spreadsheets, which run a cell that starts with `=`, `+`, `-`, `@`, tab or
//! carriage return as a formula. Text cells are neutralised with a leading
//! apostrophe, as OWASP advises; numbers are written as numbers and need none.

use std::borrow::Cow;

/// `cell`, made safe to open in a spreadsheet.
pub fn safe_cell(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_leading_cells_are_neutralised() {
        assert_eq!(safe_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(safe_cell("+254700000001"), "'+254700000001");
        assert_eq!(safe_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(safe_cell("Toyota"), "Toyota");
        assert_eq!(safe_cell(""), "");
    }
}
