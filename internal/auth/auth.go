// Package auth is Parley's account and token service: registration and
// login with argon2id password hashes, short-lived EdDSA-signed JWT access
// tokens, and rotating refresh tokens grouped in families so that reuse of a
// rotated token revokes everything descended from the same login.
package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/parley-chat/parley"
)

const issuer = "parley"

// DefaultRefreshGrace is the default of Options.RefreshGrace: the contract's
// 30 s.
const DefaultRefreshGrace = 30 * time.Second

// Store is what the auth service needs from storage.
type Store interface {
	CreateUser(ctx context.Context, u parley.User, passwordHash string) error
	UserByUsername(ctx context.Context, username string) (parley.User, string, error)
	UserByID(ctx context.Context, id string) (parley.User, error)
	CreateSession(ctx context.Context, first parley.RefreshToken) error
	RotateRefreshToken(ctx context.Context, oldHash string, next parley.RefreshToken, grace time.Duration) (parley.RefreshToken, error)
	RevokeSession(ctx context.Context, tokenHash string) error
	SessionActive(ctx context.Context, familyID string) (bool, error)
	DeleteUser(ctx context.Context, userID string) error
}

// Options configures a Service. Zero values take the defaults.
type Options struct {
	AccessTTL  time.Duration // default 15 minutes
	RefreshTTL time.Duration // default 30 days
	// RefreshGrace is how long after a refresh token was rotated it may be
	// presented again and still answer a new pair, because the answer that
	// carried its successor may have been lost (default 30 s; negative:
	// none, every reuse revokes the family).
	RefreshGrace time.Duration
	Argon2       Argon2Params // default DefaultArgon2
	// HashConcurrency bounds the argon2id computations running at once;
	// default the number of CPUs.
	HashConcurrency int
}

// Tokens is the contract's Tokens object.
type Tokens struct {
	User         parley.User `json:"user"`
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	TokenType    string      `json:"token_type"`
	ExpiresIn    int64       `json:"expires_in"`
}

// Claims is what a verified access token says.
type Claims struct {
	UserID string
	// FamilyID is the refresh-token family (the login) the token belongs to.
	FamilyID  string
	ExpiresAt time.Time
}

// Service issues and verifies tokens. It is safe for concurrent use.
type Service struct {
	store      Store
	key        ed25519.PrivateKey
	accessTTL  time.Duration
	refreshTTL time.Duration
	grace      time.Duration
	hasher     *hasher
	parser     *jwt.Parser
	// dummyHash is verified against when a user does not exist, so that a
	// wrong username costs as much time as a wrong password.
	dummyHash string
}

// New returns a Service signing with key.
func New(store Store, key ed25519.PrivateKey, opts Options) (*Service, error) {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 15 * time.Minute
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = 30 * 24 * time.Hour
	}
	if opts.RefreshGrace == 0 {
		opts.RefreshGrace = DefaultRefreshGrace
	}
	if opts.Argon2 == (Argon2Params{}) {
		opts.Argon2 = DefaultArgon2
	}
	if opts.HashConcurrency <= 0 {
		opts.HashConcurrency = runtime.NumCPU()
	}
	s := &Service{
		store:      store,
		key:        key,
		accessTTL:  opts.AccessTTL,
		refreshTTL: opts.RefreshTTL,
		grace:      max(opts.RefreshGrace, 0),
		hasher:     newHasher(opts.Argon2, opts.HashConcurrency),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuer(issuer),
			jwt.WithIssuedAt(),
			// No leeway: this server both issues and verifies, so there
			// is no clock skew to allow for, and the contract refuses an
			// expired token (401 on REST and on the upgrade) from the
			// moment it expires, as the WebSocket's expiry close does.
		),
	}
	dummy, err := s.hasher.hash(context.Background(), "not a password of anyone")
	if err != nil {
		return nil, err
	}
	s.dummyHash = dummy
	return s, nil
}

// AccessTTL is the lifetime of access tokens.
func (s *Service) AccessTTL() time.Duration { return s.accessTTL }

// Register creates an account and logs it in.
func (s *Service) Register(ctx context.Context, username, password, displayName string) (Tokens, error) {
	name, err := parley.NormalizeUsername(username)
	if err != nil {
		return Tokens{}, err
	}
	if err := parley.ValidatePassword(password); err != nil {
		return Tokens{}, err
	}
	if displayName == "" {
		displayName = name
	}
	if err := parley.ValidateDisplayName(displayName); err != nil {
		return Tokens{}, err
	}
	hash, err := s.hasher.hash(ctx, password)
	if err != nil {
		return Tokens{}, fmt.Errorf("register: %w", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Tokens{}, fmt.Errorf("register: %w", err)
	}
	u := parley.User{ID: id.String(), Username: name, DisplayName: displayName, CreatedAt: parley.Now()}
	if err := s.store.CreateUser(ctx, u, hash); err != nil {
		return Tokens{}, err
	}
	return s.startSession(ctx, u)
}

// Login checks a username and password and starts a new token family. A
// wrong password and an unknown user give the same unauthenticated error.
func (s *Service) Login(ctx context.Context, username, password string) (Tokens, error) {
	badLogin := parley.Errorf(parley.CodeUnauthenticated, "wrong username or password")
	name, nameErr := parley.NormalizeUsername(username)
	var (
		u    parley.User
		hash = s.dummyHash
	)
	if nameErr == nil {
		var err error
		u, hash, err = s.store.UserByUsername(ctx, name)
		switch {
		case parley.ErrorCode(err) == parley.CodeNotFound, err == nil && u.Deleted:
			// A deleted account has no password: it answers as an
			// unknown user does, in as much time.
			hash = s.dummyHash
		case err != nil:
			return Tokens{}, fmt.Errorf("login: %w", err)
		}
	}
	ok, err := s.hasher.verify(ctx, password, hash)
	if err != nil {
		return Tokens{}, fmt.Errorf("login: %w", err)
	}
	if !ok || nameErr != nil || hash == s.dummyHash {
		return Tokens{}, badLogin
	}
	return s.startSession(ctx, u)
}

// Refresh rotates a refresh token into a new pair. Presenting a token that
// was already rotated revokes its family, unless it is the one rotated last
// and the grace period since its rotation has not passed: then it answers
// another new pair, as a lost answer needs.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	if refreshToken == "" {
		return Tokens{}, parley.Errorf(parley.CodeInvalidArgument, "refresh_token is required")
	}
	secret, hash, err := newRefreshSecret()
	if err != nil {
		return Tokens{}, err
	}
	next, err := s.store.RotateRefreshToken(ctx, hashRefresh(refreshToken), parley.RefreshToken{
		Hash:      hash,
		ExpiresAt: parley.NewTime(time.Now().Add(s.refreshTTL)),
	}, s.grace)
	if err != nil {
		return Tokens{}, err
	}
	u, err := s.store.UserByID(ctx, next.UserID)
	if err != nil {
		return Tokens{}, fmt.Errorf("refresh: %w", err)
	}
	return s.tokens(u, next.FamilyID, secret)
}

// DeleteAccount deletes userID's account once password proves it is its
// owner (a wrong one is forbidden, not unauthenticated: the caller's
// tokens are fine, and a client must not take it for an expired token).
// See sqlstore's DeleteUser for what goes and what stays.
func (s *Service) DeleteAccount(ctx context.Context, userID, password string) error {
	if password == "" {
		return parley.Errorf(parley.CodeInvalidArgument, "password is required")
	}
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return fmt.Errorf("delete account: %w", err)
	}
	if u.Deleted {
		return parley.Errorf(parley.CodeNotFound, "user not found")
	}
	_, hash, err := s.store.UserByUsername(ctx, u.Username)
	if err != nil {
		return fmt.Errorf("delete account: %w", err)
	}
	ok, err := s.hasher.verify(ctx, password, hash)
	if err != nil {
		return fmt.Errorf("delete account: %w", err)
	}
	if !ok {
		return parley.Errorf(parley.CodeForbidden, "wrong password")
	}
	return s.store.DeleteUser(ctx, userID)
}

// Logout revokes the family of refreshToken; other logins stay.
func (s *Service) Logout(ctx context.Context, refreshToken string) error {
	if refreshToken == "" {
		return parley.Errorf(parley.CodeInvalidArgument, "refresh_token is required")
	}
	return s.store.RevokeSession(ctx, hashRefresh(refreshToken))
}

// Authenticate verifies an access token: its signature, algorithm, issuer
// and expiry, and that its family has not been revoked.
func (s *Service) Authenticate(ctx context.Context, accessToken string) (Claims, error) {
	unauth := parley.Errorf(parley.CodeUnauthenticated, "invalid or expired access token")
	var rc jwt.RegisteredClaims
	tok, err := s.parser.ParseWithClaims(accessToken, &rc, func(*jwt.Token) (any, error) {
		return s.key.Public(), nil
	})
	if err != nil || !tok.Valid || rc.Subject == "" || rc.ID == "" || rc.ExpiresAt == nil {
		return Claims{}, unauth
	}
	active, err := s.store.SessionActive(ctx, rc.ID)
	if err != nil {
		return Claims{}, fmt.Errorf("authenticate: %w", err)
	}
	if !active {
		return Claims{}, unauth
	}
	return Claims{UserID: rc.Subject, FamilyID: rc.ID, ExpiresAt: rc.ExpiresAt.Time}, nil
}

func (s *Service) startSession(ctx context.Context, u parley.User) (Tokens, error) {
	fam, err := uuid.NewV7()
	if err != nil {
		return Tokens{}, fmt.Errorf("start session: %w", err)
	}
	secret, hash, err := newRefreshSecret()
	if err != nil {
		return Tokens{}, err
	}
	if err := s.store.CreateSession(ctx, parley.RefreshToken{
		Hash:      hash,
		FamilyID:  fam.String(),
		UserID:    u.ID,
		ExpiresAt: parley.NewTime(time.Now().Add(s.refreshTTL)),
	}); err != nil {
		return Tokens{}, fmt.Errorf("start session: %w", err)
	}
	return s.tokens(u, fam.String(), secret)
}

func (s *Service) tokens(u parley.User, familyID, refreshSecret string) (Tokens, error) {
	now := time.Now()
	// JWT times are whole seconds: round the expiry up, so that the token
	// lives at least the expires_in the client is told.
	exp := now.Add(s.accessTTL)
	if r := exp.Truncate(time.Second); !r.Equal(exp) {
		exp = r.Add(time.Second)
	}
	// The family id travels as jti: the access token belongs to that login,
	// and a revoked family refuses it before it expires.
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   u.ID,
		ID:        familyID,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	})
	access, err := tok.SignedString(s.key)
	if err != nil {
		return Tokens{}, fmt.Errorf("sign access token: %w", err)
	}
	return Tokens{
		User:         u,
		AccessToken:  access,
		RefreshToken: refreshSecret,
		TokenType:    "Bearer",
		ExpiresIn:    int64(s.accessTTL / time.Second),
	}, nil
}

// newRefreshSecret returns a random refresh token and the hash to store.
func newRefreshSecret() (secret, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("refresh token: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, hashRefresh(secret), nil
}

// hashRefresh is SHA-256: refresh tokens carry 256 bits of randomness, so a
// slow hash adds nothing, and a fast one keeps lookups by hash possible.
func hashRefresh(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ErrNoToken is returned by BearerToken when the header carries none.
var ErrNoToken = errors.New("no bearer token")

// BearerToken extracts the token of an "Authorization: Bearer" header value.
func BearerToken(header string) (string, error) {
	const prefix = "bearer "
	if len(header) <= len(prefix) || !equalFoldASCII(header[:len(prefix)], prefix) {
		return "", ErrNoToken
	}
	return header[len(prefix):], nil
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
