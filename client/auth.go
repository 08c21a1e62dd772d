package client

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/parley-chat/parley"
)

// errSignedOut answers calls that need a login when there is none.
var errSignedOut = parley.Errorf(parley.CodeUnauthenticated, "not logged in")

// Refresh timings. A refresh request does not follow its caller's
// cancellation: once the server has rotated the refresh token, the answer
// is the only copy of the new one. If the answer is lost anyway (a
// network error, a timeout, a reset), the server may or may not have
// rotated the token; it accepts the token it rotated last once more within
// refreshGrace of the rotation, so the client retries with the same token
// while it is sure to be within that grace. Later, presenting it would be
// a reuse, which revokes the whole login.
const (
	// refreshAttemptTimeout bounds one refresh request.
	refreshAttemptTimeout = 10 * time.Second
	// refreshGrace is the server's grace for the refresh token rotated
	// last (the contract's default).
	refreshGrace = 30 * time.Second
	// refreshRetryWindow is how long after the first attempt was sent a
	// retry may still be sent. The grace counts from the rotation, which
	// came after the first attempt was sent; the margin is for the
	// retry's way to the server.
	refreshRetryWindow = refreshGrace - 5*time.Second
	// refreshRetryBase and refreshRetryCap bound the backoff between
	// attempts.
	refreshRetryBase = 250 * time.Millisecond
	refreshRetryCap  = 4 * time.Second
)

// tokens is the contract's Tokens object.
type tokens struct {
	User         parley.User `json:"user"`
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	TokenType    string      `json:"token_type"`
	ExpiresIn    int64       `json:"expires_in"`
}

func (t tokens) credentials(issued time.Time) *credentials {
	return &credentials{
		User:         t.User,
		AccessToken:  t.AccessToken,
		RefreshToken: t.RefreshToken,
		IssuedAt:     issued,
		ExpiresAt:    issued.Add(time.Duration(t.ExpiresIn) * time.Second),
	}
}

// Register creates an account, logs in as it, and starts connecting.
// displayName may be empty. A taken username is conflict; an invalid one
// or a password outside 8 to 1024 bytes is invalid_argument.
func (c *Client) Register(ctx context.Context, username, password, displayName string) (parley.User, error) {
	body := map[string]string{"username": username, "password": password}
	if displayName != "" {
		body["display_name"] = displayName
	}
	return c.authenticate(ctx, "/api/auth/register", body)
}

// Login logs in and starts connecting. Logging in as another user than
// the profile held wipes the profile's local data first. A wrong password
// or an unknown user is unauthenticated.
func (c *Client) Login(ctx context.Context, username, password string) (parley.User, error) {
	return c.authenticate(ctx, "/api/auth/login", map[string]string{"username": username, "password": password})
}

func (c *Client) authenticate(ctx context.Context, path string, body any) (parley.User, error) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	issued := time.Now()
	var t tokens
	if err := c.call(ctx, http.MethodPost, path, nil, body, &t, false); err != nil {
		return parley.User{}, err
	}
	cr := t.credentials(issued)
	c.pause()
	defer c.resume()
	if err := c.store.setUser(context.WithoutCancel(ctx), cr.User); err != nil {
		return parley.User{}, err
	}
	unlock, err := c.profile.lockProfile()
	if err != nil {
		return parley.User{}, err
	}
	defer unlock()
	if err := c.profile.saveCredentials(cr); err != nil {
		return parley.User{}, err
	}
	c.mu.Lock()
	c.creds, c.disabled = cr, false
	c.mu.Unlock()
	return cr.User, nil
}

// Logout revokes this login on the server and deletes the profile's
// credentials and local data, unsent messages included. The local part
// happens even when the server cannot be reached; the error then says
// that the server was not told.
func (c *Client) Logout(ctx context.Context) error {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	c.pause()
	defer c.resume()
	c.mu.Lock()
	cr := c.creds
	c.mu.Unlock()
	var serverErr error
	if cr != nil {
		serverErr = c.call(ctx, http.MethodPost, "/api/auth/logout", nil,
			map[string]string{"refresh_token": cr.RefreshToken}, nil, false)
	}
	unlock, err := c.profile.lockProfile()
	if err != nil {
		return err
	}
	err = c.profile.deleteCredentials()
	unlock()
	if err != nil {
		return err
	}
	c.signOut(nil)
	if err := c.store.wipe(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	if err := c.sweepUploads(context.WithoutCancel(ctx), 0); err != nil {
		return err
	}
	if serverErr != nil {
		return fmt.Errorf("logged out on this device, but the server was not told: %w", serverErr)
	}
	return nil
}

// pause stops the session, if any, and keeps the connection loop from
// starting another until resume: the account under it is changing.
func (c *Client) pause() {
	c.mu.Lock()
	c.paused = true
	sess := c.sess
	c.mu.Unlock()
	if sess != nil {
		sess.cancel(errRestart)
	}
	// Wait until the loop has let go of the session, so that none of its
	// workers writes into the store while the account changes.
	for {
		c.mu.Lock()
		gone := c.sess == nil
		ch := c.changed
		c.mu.Unlock()
		if gone {
			return
		}
		select {
		case <-ch:
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *Client) resume() {
	c.mu.Lock()
	c.paused = false
	c.mu.Unlock()
	c.wake()
}

// signOut forgets the login in memory: the connection loop stops.
func (c *Client) signOut(reason error) {
	c.mu.Lock()
	c.creds = nil
	sess := c.sess
	c.mu.Unlock()
	if sess != nil {
		sess.cancel(errSignedOut)
	}
	c.setState(StateSignedOut, reason)
}

// disable handles a 4003 close (the account was deleted or disabled): the
// login is forgotten, its credentials deleted (unless another process has
// already replaced them with another account's), and the client stops in
// StateDisabled until the next Login. The local data stays, as after a
// revoked login.
func (c *Client) disable(cr *credentials, reason error) {
	c.log.Warn("parley: the account was deleted or disabled", "err", reason)
	// Not while a Login or Logout changes the account: one that completed
	// first, as another user, keeps its login.
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if unlock, err := c.profile.lockProfile(); err != nil {
		c.log.Error("parley: delete credentials", "err", err)
	} else {
		disk, err := c.profile.loadCredentials()
		if err == nil && disk != nil && cr != nil && disk.User.ID == cr.User.ID {
			err = c.profile.deleteCredentials()
		}
		unlock()
		if err != nil {
			c.log.Error("parley: delete credentials", "err", err)
		}
	}
	c.mu.Lock()
	if c.creds != nil && cr != nil && c.creds.User.ID != cr.User.ID {
		c.mu.Unlock()
		return // logged in as someone else meanwhile
	}
	c.creds, c.disabled = nil, true
	c.mu.Unlock()
	c.setState(StateDisabled, reason)
}

// freshCredentials returns the login with an access token that is not past
// 80% of its lifetime, refreshing it if needed.
func (c *Client) freshCredentials(ctx context.Context) (credentials, error) {
	c.mu.Lock()
	cr := c.creds
	c.mu.Unlock()
	if cr == nil {
		return credentials{}, errSignedOut
	}
	if time.Now().Before(cr.renewAt()) {
		return *cr, nil
	}
	return c.refresh(ctx, cr.AccessToken)
}

// accessToken returns a fresh access token.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	cr, err := c.freshCredentials(ctx)
	return cr.AccessToken, err
}

// refresh replaces the access token stale (one that is due or that the
// server refused) and returns the new login. Refreshes happen one at a
// time, in this process and across the processes sharing the profile,
// and each starts by re-reading the credentials file: if another caller
// or process already replaced stale, its tokens are used and no refresh
// is made, because presenting a rotated refresh token revokes the login.
//
// A refresh token the server refuses (revoked, reused, expired) signs the
// client out: the error is unauthenticated, and the application must log
// in again. A refresh that gets no answer is retried (refreshCall).
func (c *Client) refresh(ctx context.Context, stale string) (credentials, error) {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.mu.Lock()
	cr := c.creds
	c.mu.Unlock()
	if cr == nil {
		return credentials{}, errSignedOut
	}
	if cr.AccessToken != stale && time.Now().Before(cr.renewAt()) {
		return *cr, nil // refreshed by another caller while we waited
	}
	unlock, err := c.profile.lockProfile()
	if err != nil {
		return credentials{}, err
	}
	defer unlock()
	disk, err := c.profile.loadCredentials()
	if err != nil {
		return credentials{}, err
	}
	if disk == nil || disk.User.ID != cr.User.ID {
		// Logged out, or into another account, by another process.
		c.signOut(errSignedOut)
		return credentials{}, errSignedOut
	}
	if disk.RefreshToken != cr.RefreshToken {
		c.mu.Lock()
		c.creds = disk
		c.mu.Unlock()
		if disk.AccessToken != stale && time.Now().Before(disk.renewAt()) {
			return *disk, nil // another process refreshed
		}
	}

	t, issued, err := c.refreshCall(ctx, disk.RefreshToken)
	if err != nil {
		if isUnauthenticated(err) {
			c.log.Warn("parley: the login was revoked; log in again", "err", err)
			if derr := c.profile.deleteCredentials(); derr != nil {
				c.log.Error("parley: delete credentials", "err", derr)
			}
			c.signOut(err)
		}
		return credentials{}, fmt.Errorf("refresh: %w", err)
	}
	next := t.credentials(issued)
	if err := c.profile.saveCredentials(next); err != nil {
		// The new tokens are in memory: this process keeps working, and
		// the next save may succeed. Another process will find the old
		// refresh token on disk and be signed out.
		c.log.Error("parley: save refreshed credentials", "err", err)
	}
	c.mu.Lock()
	if c.creds != nil && c.creds.User.ID == next.User.ID {
		c.creds = next
	}
	c.mu.Unlock()
	return *next, nil
}

// refreshCall presents a refresh token and returns the new pair and when
// it was asked for. An attempt that got no usable answer (a network error,
// a timeout, a 5xx, a body cut short, a rate limit) is retried with the
// same token, with backoff, for as long as a retry is sure to reach the
// server within its grace for a token it has just rotated: the lost
// answer may have carried the only copy of the new pair. A refusal (401
// and the other 4xx) is returned at once. The retries stop early only when
// the client closes; the caller's cancellation is not followed.
func (c *Client) refreshCall(ctx context.Context, token string) (tokens, time.Time, error) {
	first := time.Now()
	for attempt := 0; ; attempt++ {
		issued := time.Now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshAttemptTimeout)
		var t tokens
		err := c.call(rctx, http.MethodPost, "/api/auth/refresh", nil, map[string]string{"refresh_token": token}, &t, false)
		cancel()
		if err == nil {
			return t, issued, nil
		}
		if !answerLost(err) {
			return tokens{}, time.Time{}, err
		}
		wait := backoff(attempt, refreshRetryBase, refreshRetryCap)
		if d := parley.RetryAfter(err); d > 0 {
			wait = d
		}
		if time.Since(first)+wait > refreshRetryWindow {
			return tokens{}, time.Time{}, err
		}
		c.log.Warn("parley: refresh got no answer, retrying with the same token", "err", err, "attempt", attempt+1)
		if err := sleep(c.ctx, wait); err != nil {
			return tokens{}, time.Time{}, fmt.Errorf("%w (client closing)", err)
		}
	}
}

// answerLost reports whether a refresh that failed with err may have been
// carried out by the server without its answer reaching the client, or
// may succeed if asked again: anything but a refusal.
func answerLost(err error) bool {
	switch parley.ErrorCode(err) {
	case parley.CodeUnavailable, parley.CodeInternal, parley.CodeRateLimited:
		return true
	}
	return false
}
