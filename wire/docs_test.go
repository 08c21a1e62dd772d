package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The tests in this file keep docs/ios.md, the server's frames and the
// Swift types of the docs from drifting apart. docs/ios.md's section
// "Wire reference" (whatever its number) has a table per frame direction and a table per
// object (field, JSON type, presence, Swift type). Every golden frame in
// testdata/ (frames the server sends) and testdata/send/ (frames the app
// sends) is checked against those tables, field by field and recursively;
// the frames the app sends must also be read by the server's Go types; and
// the Swift structs of docs/ios.md must have exactly the documented fields,
// with the documented types, optional where the tables say so.

const iosDoc = "../docs/ios.md"

// docType is a JSON type of the reference tables.
type docType struct {
	kind  string   // string, integer, boolean, true, false, time, array, map, object, union
	elem  *docType // array, map
	names []string // object (one), union (several)
}

func (t docType) String() string {
	switch t.kind {
	case "array":
		return "[" + t.elem.String() + "]"
	case "map":
		return "map of " + t.elem.String()
	case "object", "union":
		return strings.Join(t.names, " or ")
	}
	return t.kind
}

type docField struct {
	name     string
	typ      docType
	presence string // required, nullable, optional
	swift    string
}

type docObject struct {
	name   string
	fields []docField
}

// docFrame is a row of a frames table: a frame type and the payloads it
// may carry ("" for none).
type docFrame struct {
	typ      string
	payloads []string
}

type wireReference struct {
	receives map[string]docFrame
	sends    map[string]docFrame
	objects  map[string]*docObject
	order    []string // object names, in the order documented
	swift    string   // every ```swift block of docs/ios.md, joined
}

var (
	identRE     = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	objectHead  = regexp.MustCompile("^#### `([A-Za-z0-9]+)`\\s*$")
	swiftBlocks = regexp.MustCompile("(?s)```swift\n(.*?)```")
	wireHead    = regexp.MustCompile(`\n## \d+\. Wire reference\n`)
)

func readReference(t *testing.T) *wireReference {
	t.Helper()
	b, err := os.ReadFile(iosDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	loc := wireHead.FindStringIndex(doc)
	if loc == nil {
		t.Fatalf("%s has no section \"## N. Wire reference\"", iosDoc)
	}
	section := doc[loc[0]+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	ref := &wireReference{
		receives: map[string]docFrame{},
		sends:    map[string]docFrame{},
		objects:  map[string]*docObject{},
	}
	for _, m := range swiftBlocks.FindAllStringSubmatch(doc, -1) {
		ref.swift += m[1] + "\n"
	}

	lines := strings.Split(section, "\n")
	var (
		heading string // the last ### or #### heading
		rows    [][]string
	)
	flush := func() {
		defer func() { rows = nil }()
		if len(rows) == 0 {
			return
		}
		switch {
		case heading == "### Frames the app receives" || heading == "### Frames the app sends":
			frames := ref.receives
			if heading == "### Frames the app sends" {
				frames = ref.sends
			}
			for _, r := range rows {
				f := docFrame{typ: unquote(r[0])}
				for _, p := range strings.Split(r[1], ",") {
					p = unquote(p)
					if p == "none" {
						p = ""
					}
					f.payloads = append(f.payloads, p)
				}
				if _, dup := frames[f.typ]; dup {
					t.Errorf("%s: frame %q documented twice under %q", iosDoc, f.typ, heading)
				}
				frames[f.typ] = f
			}
		case objectHead.MatchString(heading):
			name := objectHead.FindStringSubmatch(heading)[1]
			if _, dup := ref.objects[name]; dup {
				t.Errorf("%s: object %s documented twice", iosDoc, name)
			}
			o := &docObject{name: name}
			for _, r := range rows {
				if len(r) != 4 {
					t.Errorf("%s: object %s: row %q does not have 4 columns (field, JSON, presence, Swift)", iosDoc, name, r)
					continue
				}
				typ, err := parseDocType(r[1])
				if err != nil {
					t.Errorf("%s: object %s, field %s: %v", iosDoc, name, r[0], err)
					continue
				}
				f := docField{name: unquote(r[0]), typ: typ, presence: r[2], swift: unquote(r[3])}
				if !slices.Contains([]string{"required", "nullable", "optional"}, f.presence) {
					t.Errorf("%s: object %s, field %s: presence %q is not required, nullable or optional", iosDoc, name, f.name, f.presence)
				}
				o.fields = append(o.fields, f)
			}
			ref.objects[name] = o
			ref.order = append(ref.order, name)
		}
	}
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "### ") || strings.HasPrefix(line, "#### "):
			flush()
			heading = strings.TrimSpace(line)
		case strings.HasPrefix(line, "|"):
			cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			if len(cells) > 0 && strings.HasPrefix(cells[0], "---") {
				continue // the separator
			}
			if len(cells) > 0 && (cells[0] == "field" || cells[0] == "type") {
				continue // the header
			}
			rows = append(rows, cells)
		default:
			if strings.TrimSpace(line) != "" {
				flush()
			}
		}
	}
	flush()

	if len(ref.receives) == 0 || len(ref.sends) == 0 || len(ref.objects) == 0 {
		t.Fatalf("%s: found %d received frames, %d sent frames, %d objects in the wire reference",
			iosDoc, len(ref.receives), len(ref.sends), len(ref.objects))
	}
	// Every name the tables use is an object the tables define.
	var check func(where string, typ docType)
	check = func(where string, typ docType) {
		switch typ.kind {
		case "array", "map":
			check(where, *typ.elem)
		case "object", "union":
			for _, n := range typ.names {
				if ref.objects[n] == nil {
					t.Errorf("%s: %s names object %s, which has no table", iosDoc, where, n)
				}
			}
		}
	}
	for _, o := range ref.objects {
		for _, f := range o.fields {
			check(o.name+"."+f.name, f.typ)
		}
	}
	for _, frames := range []map[string]docFrame{ref.receives, ref.sends} {
		for _, f := range frames {
			for _, p := range f.payloads {
				if p != "" && ref.objects[p] == nil {
					t.Errorf("%s: frame %s carries object %s, which has no table", iosDoc, f.typ, p)
				}
			}
		}
	}
	return ref
}

func unquote(s string) string {
	return strings.Trim(strings.TrimSpace(s), "`")
}

func parseDocType(s string) (docType, error) {
	s = unquote(s)
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		elem, err := parseDocType(s[1 : len(s)-1])
		return docType{kind: "array", elem: &elem}, err
	case strings.HasPrefix(s, "map of "):
		elem, err := parseDocType(strings.TrimPrefix(s, "map of "))
		return docType{kind: "map", elem: &elem}, err
	case strings.Contains(s, " or "):
		t := docType{kind: "union"}
		for _, n := range strings.Split(s, " or ") {
			n = strings.TrimSpace(n)
			if !identRE.MatchString(n) {
				return t, fmt.Errorf("%q in %q is not an object name", n, s)
			}
			t.names = append(t.names, n)
		}
		return t, nil
	case slices.Contains([]string{"string", "integer", "boolean", "true", "false", "time"}, s):
		return docType{kind: s}, nil
	case identRE.MatchString(s):
		return docType{kind: "object", names: []string{s}}, nil
	}
	return docType{}, fmt.Errorf("unknown JSON type %q", s)
}

// validator checks JSON values against the reference and records which
// objects validated somewhere.
type validator struct {
	ref  *wireReference
	used map[string]bool
}

// value checks v (decoded with UseNumber) against typ; it returns the
// problems and the objects that validated on the way.
func (c *validator) value(v any, typ docType, path string) (problems []string, used []string) {
	bad := func(format string, args ...any) ([]string, []string) {
		return []string{path + ": " + fmt.Sprintf(format, args...)}, nil
	}
	switch typ.kind {
	case "string":
		if _, ok := v.(string); !ok {
			return bad("want a string, got %s", jsonKind(v))
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return bad("want an integer, got %s", jsonKind(v))
		}
		if _, err := n.Int64(); err != nil {
			return bad("want an integer, got %s", n)
		}
	case "boolean", "true", "false":
		b, ok := v.(bool)
		if !ok {
			return bad("want a boolean, got %s", jsonKind(v))
		}
		if typ.kind != "boolean" && fmt.Sprint(b) != typ.kind {
			return bad("want %s, got %v", typ.kind, b)
		}
	case "time":
		s, ok := v.(string)
		if !ok {
			return bad("want a time, got %s", jsonKind(v))
		}
		// What the docs' Swift decoder accepts: RFC 3339, with or without
		// fractional seconds.
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return bad("want an RFC 3339 time, got %q", s)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return bad("want an array, got %s", jsonKind(v))
		}
		for i, e := range a {
			p, u := c.value(e, *typ.elem, fmt.Sprintf("%s[%d]", path, i))
			problems, used = append(problems, p...), append(used, u...)
		}
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			return bad("want an object, got %s", jsonKind(v))
		}
		for k, e := range m {
			p, u := c.value(e, *typ.elem, path+"."+k)
			problems, used = append(problems, p...), append(used, u...)
		}
	case "object":
		return c.object(v, c.ref.objects[typ.names[0]], path)
	case "union":
		var all []string
		for _, n := range typ.names {
			p, u := c.object(v, c.ref.objects[n], path)
			if len(p) == 0 {
				return nil, u
			}
			all = append(all, fmt.Sprintf("as %s: %s", n, strings.Join(p, "; ")))
		}
		return bad("matches none of %s (%s)", typ, strings.Join(all, " | "))
	}
	return problems, used
}

func (c *validator) object(v any, o *docObject, path string) (problems []string, used []string) {
	if o == nil {
		return []string{path + ": undocumented object"}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return []string{fmt.Sprintf("%s: want a %s object, got %s", path, o.name, jsonKind(v))}, nil
	}
	known := map[string]bool{}
	for _, f := range o.fields {
		known[f.name] = true
		fv, present := m[f.name]
		switch {
		case !present && f.presence != "optional":
			problems = append(problems, fmt.Sprintf("%s: %s field %q is %s but absent", path, o.name, f.name, f.presence))
		case present && fv == nil && f.presence == "required":
			problems = append(problems, fmt.Sprintf("%s: %s field %q is required but null", path, o.name, f.name))
		case present && fv != nil:
			p, u := c.value(fv, f.typ, path+"."+f.name)
			problems, used = append(problems, p...), append(used, u...)
		}
	}
	for k := range m {
		if !known[k] {
			problems = append(problems, fmt.Sprintf("%s: field %q is not documented for %s", path, k, o.name))
		}
	}
	if len(problems) == 0 {
		used = append(used, o.name)
	}
	return problems, used
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// frame checks one golden frame against a frames table and returns its
// type and payload.
func (c *validator) frame(t *testing.T, path string, frames map[string]docFrame) (typ string, payload json.RawMessage) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil {
		t.Errorf("%s: not a JSON object: %v", path, err)
		return "", nil
	}
	for k := range env {
		if k != "type" && k != "id" && k != "payload" {
			t.Errorf("%s: the envelope has field %q besides type, id and payload", path, k)
		}
	}
	if err := json.Unmarshal(env["type"], &typ); err != nil || typ == "" {
		t.Errorf("%s: no string type", path)
		return "", nil
	}
	if raw, ok := env["id"]; ok {
		var id string
		if err := json.Unmarshal(raw, &id); err != nil {
			t.Errorf("%s: id is not a string", path)
		}
	}
	doc, ok := frames[typ]
	if !ok {
		t.Errorf("%s: frame type %q is not in the wire reference of %s", path, typ, iosDoc)
		return typ, nil
	}
	payload = env["payload"]
	if len(payload) == 0 || string(payload) == "null" {
		if !slices.Contains(doc.payloads, "") {
			t.Errorf("%s: %s has no payload; the docs say it carries %s", path, typ, strings.Join(doc.payloads, " or "))
		}
		return typ, nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Errorf("%s: payload: %v", path, err)
		return typ, payload
	}
	var tried []string
	for _, name := range doc.payloads {
		if name == "" {
			continue
		}
		problems, used := c.object(v, c.ref.objects[name], "payload")
		if len(problems) == 0 {
			for _, u := range used {
				c.used[u] = true
			}
			return typ, payload
		}
		tried = append(tried, fmt.Sprintf("as %s:\n\t%s", name, strings.Join(problems, "\n\t")))
	}
	t.Errorf("%s: the %s payload does not follow %s:\n%s", path, typ, iosDoc, strings.Join(tried, "\n"))
	return typ, payload
}

// TestGoldenFramesFollowTheIOSDocs checks every golden frame against the
// wire reference of docs/ios.md, both ways: each frame follows the tables,
// each documented frame type and object has a golden frame.
func TestGoldenFramesFollowTheIOSDocs(t *testing.T) {
	ref := readReference(t)
	c := &validator{ref: ref, used: map[string]bool{}}

	received, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(received) == 0 {
		t.Fatalf("no golden frames in testdata: %v", err)
	}
	seen := map[string]bool{}
	for _, path := range received {
		typ, _ := c.frame(t, path, ref.receives)
		seen[typ] = true
	}
	for typ := range ref.receives {
		if !seen[typ] {
			t.Errorf("%s documents the received frame %q, but testdata/ has no golden frame of that type", iosDoc, typ)
		}
	}

	// The frames the app sends follow the docs, and the server's own
	// types read every field of them.
	goTypes := map[string]func() any{
		TypeAuth:        func() any { return new(Auth) },
		TypeMessageSend: func() any { return new(MessageSend) },
		TypeReceipt:     func() any { return new(ReceiptSend) },
		TypeTyping:      func() any { return new(TypingSend) },
		TypeRoomJoin:    func() any { return new(Room) },
		TypeRoomLeave:   func() any { return new(Room) },
		TypeSync:        func() any { return new(Sync) },
		TypeAppState:    func() any { return new(AppState) },
	}
	sent, err := filepath.Glob(filepath.Join("testdata", "send", "*.json"))
	if err != nil || len(sent) == 0 {
		t.Fatalf("no golden frames in testdata/send: %v", err)
	}
	seen = map[string]bool{}
	for _, path := range sent {
		typ, payload := c.frame(t, path, ref.sends)
		seen[typ] = true
		newGo, ok := goTypes[typ]
		if !ok {
			t.Errorf("%s: no Go type of the server for %q in this test", path, typ)
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(newGo()); err != nil {
			t.Errorf("%s: the server's Go type does not read the payload the docs send: %v", path, err)
		}
	}
	for typ := range ref.sends {
		if !seen[typ] {
			t.Errorf("%s documents the sent frame %q, but testdata/send/ has no golden frame of that type", iosDoc, typ)
		}
	}

	for _, name := range ref.order {
		if !c.used[name] {
			t.Errorf("%s documents object %s, but no golden frame contains a valid one", iosDoc, name)
		}
	}
}

// TestGoldenRemovedSyncEntry pins the case that once broke iOS clients: a
// removed sync entry carries a conversation with its id alone, and the
// docs decode it with a type whose only required field is the id.
func TestGoldenRemovedSyncEntry(t *testing.T) {
	ref := readReference(t)
	c := &validator{ref: ref, used: map[string]bool{}}
	typ, _ := c.frame(t, filepath.Join("testdata", "sync_result_removed.json"), ref.receives)
	if typ != TypeSyncResult {
		t.Fatalf("sync_result_removed.json is a %q frame", typ)
	}
	if !c.used["RemovedSyncEntry"] || c.used["SyncEntry"] {
		t.Errorf("the removed entry validated as %v, want RemovedSyncEntry only", c.used)
	}
	if o := ref.objects["RemovedSyncEntry"]; o != nil {
		for _, f := range o.fields {
			if f.name == "conversation" && f.typ.String() != "ConversationRef" {
				t.Errorf("RemovedSyncEntry.conversation is %s, want ConversationRef", f.typ)
			}
		}
	}
	if o := ref.objects["ConversationRef"]; o != nil {
		for _, f := range o.fields {
			if f.name != "id" && f.presence == "required" {
				t.Errorf("ConversationRef.%s is required: a removed entry has only the id", f.name)
			}
		}
	}
}

// swiftStruct is a struct of the docs' Swift: its stored properties, by
// JSON name, with their Swift types.
func swiftStruct(code, name string) (map[string]string, error) {
	loc := regexp.MustCompile(`(?m)^[ \t]*struct ` + name + `\b[^{\n]*\{`).FindStringIndex(code)
	if loc == nil {
		return nil, fmt.Errorf("no struct %s in the Swift of %s", name, iosDoc)
	}
	body, err := braced(code, loc[1]-1)
	if err != nil {
		return nil, fmt.Errorf("struct %s: %v", name, err)
	}
	// The lines at the struct's own level, and the CodingKeys enum.
	var top []string
	keys := map[string]string{}
	hasKeys := false
	depth := 0
	inKeys := false
	prop := regexp.MustCompile(`^\s*(?:(?:public|internal|private|fileprivate)\s+)?(?:let|var)\s+(\w+)\s*:\s*(.+?)\s*(?://.*)?$`)
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if depth == 0 {
			top = append(top, line)
			if strings.HasPrefix(trimmed, "enum CodingKeys") {
				hasKeys, inKeys = true, true
			}
		} else if inKeys && strings.HasPrefix(trimmed, "case ") {
			for _, item := range strings.Split(strings.TrimPrefix(trimmed, "case "), ",") {
				item = strings.TrimSpace(item)
				if k, v, ok := strings.Cut(item, "="); ok {
					keys[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
				} else if item != "" {
					keys[item] = item
				}
			}
		}
		depth += strings.Count(line, "{") - strings.Count(line, "}")
		if depth == 0 {
			inKeys = false
		}
	}
	props := map[string]string{}
	for _, line := range top {
		if strings.Contains(line, "{") || strings.Contains(strings.TrimSpace(line), "static ") {
			continue // a computed property, a method, a nested type
		}
		m := prop.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		jsonName := m[1]
		if hasKeys {
			k, ok := keys[m[1]]
			if !ok {
				return nil, fmt.Errorf("struct %s: property %s is not in CodingKeys", name, m[1])
			}
			jsonName = k
		}
		props[jsonName] = strings.Join(strings.Fields(m[2]), " ")
	}
	return props, nil
}

// braced returns the text between the brace at open and its match.
func braced(code string, open int) (string, error) {
	depth := 0
	for i := open; i < len(code); i++ {
		switch code[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return code[open+1 : i], nil
			}
		}
	}
	return "", fmt.Errorf("unbalanced braces")
}

// swiftFor returns the Swift types that may stand for a JSON type.
func swiftFor(t docType) []string {
	switch t.kind {
	case "string":
		return []string{"String"}
	case "integer":
		return []string{"Int64", "Int"}
	case "boolean", "true", "false":
		return []string{"Bool"}
	case "time":
		return []string{"Date"}
	case "object":
		return []string{t.names[0]}
	case "array":
		var out []string
		for _, e := range swiftFor(*t.elem) {
			out = append(out, "["+e+"]")
		}
		return out
	case "map":
		var out []string
		for _, e := range swiftFor(*t.elem) {
			out = append(out, "[String: "+e+"]")
		}
		return out
	}
	return nil // a union: an enum, checked apart
}

// TestIOSDocsSwiftTypesFollowTheReference checks the Swift structs of
// docs/ios.md against its wire reference: the same fields, each with the
// documented Swift type, optional exactly where the field may be absent or
// null.
func TestIOSDocsSwiftTypesFollowTheReference(t *testing.T) {
	ref := readReference(t)
	for _, name := range ref.order {
		o := ref.objects[name]
		props, err := swiftStruct(ref.swift, name)
		if err != nil {
			t.Error(err)
			continue
		}
		documented := map[string]bool{}
		for _, f := range o.fields {
			documented[f.name] = true
			optional := strings.HasSuffix(f.swift, "?")
			if (f.presence == "required") == optional {
				t.Errorf("%s.%s is %s but its Swift type is %s", name, f.name, f.presence, f.swift)
			}
			base := strings.TrimSuffix(f.swift, "?")
			if f.typ.kind == "union" || (f.typ.kind == "array" && f.typ.elem.kind == "union") {
				enum := strings.Trim(base, "[]")
				loc := regexp.MustCompile(`(?m)^[ \t]*enum ` + enum + `\b[^{\n]*\{`).FindStringIndex(ref.swift)
				if loc == nil {
					t.Errorf("%s.%s: no enum %s in the Swift", name, f.name, enum)
					continue
				}
				body, _ := braced(ref.swift, loc[1]-1)
				u := f.typ
				if u.kind == "array" {
					u = *u.elem
				}
				for _, alt := range u.names {
					if !regexp.MustCompile(`case \w+\(` + alt + `\)`).MatchString(body) {
						t.Errorf("%s.%s: enum %s has no case wrapping %s", name, f.name, enum, alt)
					}
				}
			} else if !slices.Contains(swiftFor(f.typ), base) {
				t.Errorf("%s.%s: Swift type %s does not hold a JSON %s (want one of %v)", name, f.name, f.swift, f.typ, swiftFor(f.typ))
			}
			got, ok := props[f.name]
			switch {
			case !ok:
				t.Errorf("struct %s has no property for the documented field %q", name, f.name)
			case got != f.swift:
				t.Errorf("struct %s: field %q is %s in the Swift, %s in the table", name, f.name, got, f.swift)
			}
		}
		var extra []string
		for k := range props {
			if !documented[k] {
				extra = append(extra, k)
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			t.Errorf("struct %s decodes %v, which its table does not list", name, extra)
		}
	}
}

// appleTypes are the names of Apple's SDKs (AVFoundation and AVKit for
// media included), the Swift standard library and Starscream that the
// docs' Swift may use without defining them. A name that is neither here
// nor defined in the docs is a type a reader cannot find.
var appleTypes = strings.Fields(`
	Any AnyObject App Array Bool CFDictionary CFTypeRef CheckedContinuation
	Codable CodingKey ContinuousClock Data Date Decodable Decoder DecodingError
	Dictionary DispatchQueue Double Duration Encodable Environment Equatable
	Error FileManager HTTPURLResponse HTTPUpgradeError Hashable ISO8601DateFormatter
	Identifiable Int Int32 Int64 JSONDecoder JSONEncoder MainActor NSError
	NSLock NSNumber NSOSStatusErrorDomain NSObject Never Optional POSIXError
	POSIXErrorCode ProcessInfo Scene SecItemAdd SecItemCopyMatching SecItemDelete
	SecItemUpdate Self Set Starscream String SwiftUI Task Text TimeInterval
	UIApplication UIApplicationDelegate UIApplicationDelegateAdaptor
	UIBackgroundTaskIdentifier UIKit UInt16 UNMutableNotificationContent
	UNNotification UNNotificationContent UNNotificationPresentationOptions
	UNNotificationRequest UNNotificationResponse UNNotificationServiceExtension
	UNUserNotificationCenter UNUserNotificationCenterDelegate URL URLError
	URLRequest URLResponse URLSession URLSessionTask URLSessionWebSocketDelegate
	URLSessionWebSocketTask UUID UserDefaults UserNotifications View Void
	WebSocket WebSocketClient WebSocketDelegate WebSocketEvent WindowGroup
	Foundation Security Network NWPathMonitor
	AVFoundation AVKit AVAssetExportSession AVAssetExportPreset1920x1080 AVPlayer
	AVURLAsset CGFloat Color FileHandle Group Image NSCache NSString UIImage UInt64
	UNNotificationAttachment URLComponents URLQueryItem URLSessionConfiguration
	URLSessionDataDelegate URLSessionDataTask VideoPlayer
`)

// TestIOSDocsDefineTheirSwiftTypes: every type name the Swift of
// docs/ios.md and docs/push.md uses is defined there, or is Apple's or
// Starscream's.
func TestIOSDocsDefineTheirSwiftTypes(t *testing.T) {
	var code string
	for _, path := range []string{iosDoc, "../docs/push.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range swiftBlocks.FindAllStringSubmatch(string(b), -1) {
			code += m[1] + "\n"
		}
	}
	code = regexp.MustCompile(`"(?:[^"\\\n]|\\.)*"`).ReplaceAllString(code, `""`)
	code = regexp.MustCompile(`//[^\n]*`).ReplaceAllString(code, "")
	code = regexp.MustCompile(`/\*.*?\*/`).ReplaceAllString(code, "")
	code = regexp.MustCompile(`#if \w+`).ReplaceAllString(code, "")

	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`\b(?:struct|class|enum|protocol|actor|typealias|extension)\s+(\w+)`).FindAllStringSubmatch(code, -1) {
		defined[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`<(\w+)\s*:`).FindAllStringSubmatch(code, -1) {
		defined[m[1]] = true // generic parameters
	}
	for _, n := range appleTypes {
		defined[n] = true
	}
	var missing []string
	for _, m := range regexp.MustCompile(`(^|[^.@\w])([A-Z]\w*)`).FindAllStringSubmatch(code, -1) {
		name := m[2]
		if defined[name] || len(name) == 1 || strings.ToUpper(name) == name {
			continue // defined, a generic parameter, a constant such as LOCK_EX
		}
		if !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the Swift of docs/ios.md and docs/push.md uses types it never defines: %v "+
			"(define them in the docs, or add Apple's to appleTypes in this test)", missing)
	}
}
