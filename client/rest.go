package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley"
)

// maxResponseBytes bounds what the client reads of one REST answer. The
// largest legitimate one is a page of 200 messages of 16 KiB.
const maxResponseBytes = 8 << 20

// problem is an RFC 9457 problem details object with the contract's code.
type problem struct {
	Title        string      `json:"title"`
	Status       int         `json:"status"`
	Detail       string      `json:"detail"`
	Code         parley.Code `json:"code"`
	RetryAfterMS int64       `json:"retry_after_ms"`
}

// codeOfStatus maps an HTTP status to the contract's code, for an error
// answer that carries no problem object (a proxy's, say).
func codeOfStatus(status int) parley.Code {
	switch status {
	case http.StatusBadRequest:
		return parley.CodeInvalidArgument
	case http.StatusUnauthorized:
		return parley.CodeUnauthenticated
	case http.StatusForbidden:
		return parley.CodeForbidden
	case http.StatusNotFound:
		return parley.CodeNotFound
	case http.StatusConflict:
		return parley.CodeConflict
	case http.StatusRequestEntityTooLarge:
		return parley.CodePayloadTooLarge
	case http.StatusTooManyRequests:
		return parley.CodeRateLimited
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return parley.CodeUnavailable
	}
	return parley.CodeInternal
}

// responseError turns an error answer into a *parley.Error.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p problem
	_ = json.Unmarshal(b, &p) // a body that is not a problem leaves p empty
	if p.Code == "" {
		p.Code = codeOfStatus(resp.StatusCode)
	}
	if p.Detail == "" {
		p.Detail = http.StatusText(resp.StatusCode)
	}
	e := parley.Errorf(p.Code, "%s", p.Detail)
	if p.Code == parley.CodeRateLimited {
		e.RetryAfter = time.Duration(p.RetryAfterMS) * time.Millisecond
		if e.RetryAfter == 0 {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
				e.RetryAfter = time.Duration(s) * time.Second
			}
		}
	}
	return e
}

// transportError wraps a transport failure of a REST call: the server could not
// be reached. Its code is unavailable.
func transportError(method, path string, err error) error {
	e := parley.Errorf(parley.CodeUnavailable, "%s %s: server unreachable", method, path)
	e.Err = err
	return e
}

// call makes one REST call to the server the client currently uses and
// decodes a JSON answer into out (which may be nil). With authed, it sends
// the access token, refreshing it first when due, and once more after a
// 401 (the token may have been revoked or have expired in flight).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, out any, authed bool) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
	}
	for attempt := 0; ; attempt++ {
		var token string
		if authed {
			var err error
			if token, err = c.accessToken(ctx); err != nil {
				return err
			}
		}
		resp, err := c.do(ctx, method, path, query, payload, token)
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusUnauthorized && authed && attempt == 0 {
			resp.Body.Close()
			if _, err := c.refresh(ctx, token); err != nil {
				return err
			}
			continue
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %w", method, path, responseError(resp))
		}
		if out == nil || resp.StatusCode == http.StatusNoContent {
			return nil
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
		return nil
	}
}

// do sends one request. Transport failures come back as unavailable.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, payload []byte, token string) (*http.Response, error) {
	u := c.serverURL()
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query.Encode()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return nil, transportError(method, path, err)
	}
	return resp, nil
}

// isPermanent reports whether a send that failed with err can never
// succeed, so that retrying it is pointless.
func isPermanent(err error) bool {
	switch parley.ErrorCode(err) {
	case parley.CodeNotFound, parley.CodeForbidden, parley.CodeInvalidArgument, parley.CodePayloadTooLarge:
		return true
	}
	return false
}

// isUnauthenticated reports whether err says the credentials are dead.
func isUnauthenticated(err error) bool {
	var e *parley.Error
	return errors.As(err, &e) && e.Code == parley.CodeUnauthenticated
}
