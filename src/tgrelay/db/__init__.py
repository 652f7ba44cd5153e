"""Storage: engine, tables, migrations. Knows no domain beyond the schema it declares."""
