package parley

import (
	"errors"
	"fmt"
	"time"
)

// Code is one of the error codes of the v1 wire contract. The set is closed:
// REST maps each to one HTTP status and WebSocket sends it in error frames.
type Code string

// The contract's error codes.
const (
	CodeInvalidArgument Code = "invalid_argument"
	CodeUnauthenticated Code = "unauthenticated"
	CodeForbidden       Code = "forbidden"
	CodeNotFound        Code = "not_found"
	CodeConflict        Code = "conflict"
	CodePayloadTooLarge Code = "payload_too_large"
	CodeRateLimited     Code = "rate_limited"
	CodeInternal        Code = "internal"
	CodeUnavailable     Code = "unavailable"
)

// HTTPStatus is the one table from the contract's error codes to HTTP
// statuses; 0 for a code that is not the contract's.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeInvalidArgument:
		return 400
	case CodeUnauthenticated:
		return 401
	case CodeForbidden:
		return 403
	case CodeNotFound:
		return 404
	case CodeConflict:
		return 409
	case CodePayloadTooLarge:
		return 413
	case CodeRateLimited:
		return 429
	case CodeInternal:
		return 500
	case CodeUnavailable:
		return 503
	}
	return 0
}

// Error is an error a client may see: a code from the contract and a message
// safe to show. Internal causes are kept in Err for logs and never sent.
type Error struct {
	Code    Code
	Message string
	// RetryAfter is set with CodeRateLimited.
	RetryAfter time.Duration
	// Err is the internal cause, if any; it is logged, never sent.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RateLimited returns a rate_limited error that tells the client when to retry.
func RateLimited(retryAfter time.Duration) *Error {
	return &Error{Code: CodeRateLimited, Message: "rate limit exceeded", RetryAfter: retryAfter}
}

// ErrorCode returns the contract code of err: the code of the first *Error in
// its chain, or CodeInternal for any other error. It returns "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the client-safe message of err. Errors that are not
// an *Error are internal, and their text never leaves the server.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// RetryAfter returns the retry delay carried by a rate_limited error, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
