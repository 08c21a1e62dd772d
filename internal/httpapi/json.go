package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"

	"github.com/parley-chat/parley"
)

// decodeJSON reads r's body, at most limit bytes, as one JSON object into
// v. Unknown fields are ignored, as the contract lets clients send more
// than a server knows. The Content-Type is not checked: the contract does
// not require clients to send one, and URLSession labels a body it was not
// told about as a form.
//
// Malformed JSON, a value of the wrong type, anything but an object, or
// data after it is invalid_argument; a body over limit is
// payload_too_large.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return bodyError(err)
		}
		return parley.Errorf(parley.CodeInvalidArgument, "request body has data after the JSON object")
	}
	if raw[0] != '{' {
		return parley.Errorf(parley.CodeInvalidArgument, "request body must be a JSON object")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return bodyError(err)
	}
	return nil
}

// bodyError turns an error of reading or decoding a body into a client
// error that says what is wrong.
func bodyError(err error) error {
	var (
		tooBig  *http.MaxBytesError
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return parley.Errorf(parley.CodePayloadTooLarge, "request body is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return parley.Errorf(parley.CodeInvalidArgument, "request body must be a JSON object, and it is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return parley.Errorf(parley.CodeInvalidArgument, "request body ends in the middle of its JSON")
	case errors.As(err, &syntax):
		return parley.Errorf(parley.CodeInvalidArgument, "request body is malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return parley.Errorf(parley.CodeInvalidArgument, "request body must be a JSON object")
		}
		return parley.Errorf(parley.CodeInvalidArgument, "field %q must be %s, not %s", typeErr.Field, jsonKind(typeErr.Type), typeErr.Value)
	}
	e := parley.Errorf(parley.CodeInvalidArgument, "could not read the request body")
	e.Err = err
	return e
}

// jsonKind names the JSON value that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

// writeJSON answers v as application/json with status.
func (h *api) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	h.writeJSONAs(w, r, "application/json", status, v)
}

// writeJSONAs answers v as JSON with the given content type and status.
// It encodes v before writing anything, so that a value that cannot be
// encoded still gets a proper 500.
func (h *api) writeJSONAs(w http.ResponseWriter, r *http.Request, contentType string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.logInternal(r, fmt.Errorf("encode answer: %w", err))
		contentType, status = "application/problem+json", http.StatusInternalServerError
		b = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"internal error","code":"internal"}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	// A failed write means the client has gone; there is no one to tell.
	_, _ = w.Write(append(b, '\n'))
}

// noContent answers 204.
func noContent(w http.ResponseWriter) {
	w.WriteHeader(http.StatusNoContent)
}
