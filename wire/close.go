package wire

// CloseCode is a WebSocket close code of the v1 contract.
type CloseCode int

// The contract's close codes. The server sends those it needs; a client
// handles each as CloseCodes says.
const (
	CloseNormal          CloseCode = 1000
	CloseGoingAway       CloseCode = 1001
	CloseInvalidUTF8     CloseCode = 1007
	ClosePolicy          CloseCode = 1008
	CloseTooBig          CloseCode = 1009
	CloseInternal        CloseCode = 1011
	CloseTryAgainLater   CloseCode = 1013
	CloseUnauthenticated CloseCode = 4001
	CloseDisabled        CloseCode = 4003
)

// Then is what a client does after a close.
type Then string

// What a client does after a close.
const (
	// ThenReconnect: reconnect with backoff, then sync.
	ThenReconnect Then = "reconnect"
	// ThenReconnectElsewhere: reconnect with backoff, to another node if
	// there is one, then sync.
	ThenReconnectElsewhere Then = "reconnect elsewhere"
	// ThenRefresh: refresh the access token, then reconnect and sync.
	ThenRefresh Then = "refresh"
	// ThenStop: do not reconnect.
	ThenStop Then = "stop"
)

// Close is one row of the close-code table.
type Close struct {
	Code CloseCode
	// Meaning says why the server (or the client) closed.
	Meaning string
	Then    Then
}

// CloseCodes returns the contract's close codes, in order: the one table
// that the gateway, the Go SDK and docs/protocol.md follow.
func CloseCodes() []Close {
	return []Close{
		{CloseNormal, "normal closure", ThenReconnect},
		{CloseGoingAway, "server going away: restart, deploy or drain", ThenReconnectElsewhere},
		{CloseInvalidUTF8, "a text frame was not valid UTF-8", ThenReconnect},
		{ClosePolicy, "policy violation", ThenReconnect},
		{CloseTooBig, "a frame was larger than the server's limit", ThenReconnect},
		{CloseInternal, "the server hit an internal error", ThenReconnect},
		{CloseTryAgainLater, "the server could not keep up with the connection, is overloaded, or (a node of a cluster) lost its event bus", ThenReconnect},
		{CloseUnauthenticated, "unauthenticated: no or bad first-frame auth, token expired, login revoked", ThenRefresh},
		{CloseDisabled, "the account was deleted or disabled", ThenStop},
	}
}

// CloseThen returns what a client does after a close with code: the
// table's answer, or reconnect for a code it does not list (1006 when the
// connection dropped without a close frame).
func CloseThen(code int) Then {
	for _, c := range CloseCodes() {
		if int(c.Code) == code {
			return c.Then
		}
	}
	return ThenReconnect
}
