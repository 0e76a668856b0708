package backup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tufota/tufota"
	"github.com/tufota/tufota/storage"
)

// schemaTable is the migration bookkeeping table: dumped (it records the
// schema version) but never loaded; the target's own migrations fill it.
const schemaTable = "schema_migrations"

// tableHeader is the first line of a db/<table>.jsonl file.
type tableHeader struct {
	Table   string   `json:"table"`
	Columns []string `json:"columns"`
}

// listTables returns the user tables of the database, sorted by name.
func listTables(ctx context.Context, q storage.Querier, dialect string) ([]string, error) {
	var query string
	switch dialect {
	case storage.DialectSQLite:
		query = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	case storage.DialectPostgres:
		query = `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	default:
		return nil, tufota.Errorf(tufota.EInvalid, "unknown database dialect %q", dialect)
	}
	rows, err := q.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return out, nil
}

// quoteIdent quotes a table or column name for both dialects.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// dumpDB writes every table to db/<table>.jsonl inside one transaction:
// REPEATABLE READ on PostgreSQL (one snapshot for every statement), and on
// SQLite a transaction that holds the write lock (BEGIN IMMEDIATE), so no
// writer commits between two tables.
func dumpDB(ctx context.Context, db *storage.DB, w *writer) (tables []TableInfo, schema int64, err error) {
	err = db.Tx(ctx, func(tx *storage.Tx) error {
		if db.Dialect() == storage.DialectPostgres {
			if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`); err != nil {
				return fmt.Errorf("start snapshot: %w", err)
			}
		}
		names, err := listTables(ctx, tx, db.Dialect())
		if err != nil {
			return err
		}
		for _, name := range names {
			ti, err := dumpTable(ctx, tx, name, w)
			if err != nil {
				return err
			}
			tables = append(tables, ti)
		}
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&schema); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		return nil
	})
	return tables, schema, err
}

func dumpTable(ctx context.Context, tx *storage.Tx, name string, w *writer) (TableInfo, error) {
	rows, err := tx.Query(ctx, "SELECT * FROM "+quoteIdent(name))
	if err != nil {
		return TableInfo{}, fmt.Errorf("dump %s: %w", name, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return TableInfo{}, fmt.Errorf("dump %s: %w", name, err)
	}
	h, err := w.open(dbDir + "/" + name + ".jsonl")
	if err != nil {
		return TableInfo{}, err
	}
	bw := bufio.NewWriter(h)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	fail := func(err error) (TableInfo, error) {
		_ = h.f.Close()
		return TableInfo{}, fmt.Errorf("dump %s: %w", name, err)
	}
	if err := enc.Encode(tableHeader{Table: name, Columns: cols}); err != nil {
		return fail(err)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	out := make([]any, len(cols))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fail(err)
		}
		for i, v := range vals {
			if out[i], err = encodeValue(v); err != nil {
				return fail(fmt.Errorf("column %s: %w", cols[i], err))
			}
		}
		if err := enc.Encode(out); err != nil {
			return fail(err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := w.close(h); err != nil {
		return TableInfo{}, err
	}
	return TableInfo{Name: name, Columns: cols, Rows: n}, nil
}

// encodeValue maps a scanned SQL value to JSON without loss: NULL is null,
// integers are numbers, valid UTF-8 strings are strings, and anything else
// is an object naming its type ({"b64": ...} for bytes or non-UTF-8 text,
// {"float": "..."} for a float).
func encodeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case string:
		if utf8.ValidString(x) {
			return x, nil
		}
		return map[string]string{"b64": base64.StdEncoding.EncodeToString([]byte(x))}, nil
	case []byte:
		if utf8.Valid(x) {
			return map[string]string{"text": string(x)}, nil
		}
		return map[string]string{"b64": base64.StdEncoding.EncodeToString(x)}, nil
	case float64:
		return map[string]string{"float": strconv.FormatFloat(x, 'g', -1, 64)}, nil
	default:
		return nil, fmt.Errorf("unsupported value type %T", v)
	}
}

// decodeValue reverses encodeValue.
func decodeValue(raw json.RawMessage) (any, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case string(raw) == "null":
		return nil, nil
	case len(raw) > 0 && raw[0] == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case len(raw) > 0 && raw[0] == '{':
		var obj map[string]string
		if err := json.Unmarshal(raw, &obj); err != nil || len(obj) != 1 {
			return nil, fmt.Errorf("bad value %.40s", raw)
		}
		switch {
		case hasKey(obj, "text"):
			return obj["text"], nil
		case hasKey(obj, "b64"):
			b, err := base64.StdEncoding.DecodeString(obj["b64"])
			return string(b), err
		case hasKey(obj, "float"):
			return strconv.ParseFloat(obj["float"], 64)
		}
		return nil, fmt.Errorf("bad value %.40s", raw)
	default:
		return strconv.ParseInt(string(raw), 10, 64)
	}
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// loadTable inserts the rows of one dumped table.
func loadTable(ctx context.Context, tx *storage.Tx, r io.Reader, want TableInfo) (int64, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	line, err := readLine(br)
	if err != nil {
		return 0, fmt.Errorf("table %s: read header: %w", want.Name, err)
	}
	var hdr tableHeader
	if err := json.Unmarshal(line, &hdr); err != nil || hdr.Table != want.Name || len(hdr.Columns) == 0 {
		return 0, tufota.Errorf(tufota.EInvalid, "table %s: bad header line", want.Name)
	}
	quoted := make([]string, len(hdr.Columns))
	for i, c := range hdr.Columns {
		quoted[i] = quoteIdent(c)
	}
	q := "INSERT INTO " + quoteIdent(hdr.Table) + " (" + strings.Join(quoted, ", ") + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(quoted)), ", ") + ")"
	var n int64
	for {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("table %s row %d: %w", want.Name, n+1, err)
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(line, &raws); err != nil || len(raws) != len(hdr.Columns) {
			return n, tufota.Errorf(tufota.EInvalid, "table %s row %d: not an array of %d values", want.Name, n+1, len(hdr.Columns))
		}
		args := make([]any, len(raws))
		for i, raw := range raws {
			if args[i], err = decodeValue(raw); err != nil {
				return n, tufota.Errorf(tufota.EInvalid, "table %s row %d column %s: %v", want.Name, n+1, hdr.Columns[i], err)
			}
		}
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return n, fmt.Errorf("table %s row %d: %w", want.Name, n+1, err)
		}
		n++
	}
	if n != want.Rows {
		return n, tufota.Errorf(tufota.EInvalid, "table %s: %d rows, the manifest says %d", want.Name, n, want.Rows)
	}
	return n, nil
}

// readLine returns the next line without its newline; io.EOF at the end.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadBytes('\n')
	if err == io.EOF && len(line) > 0 {
		return line, nil
	}
	if err != nil {
		return nil, err
	}
	return line[:len(line)-1], nil
}
