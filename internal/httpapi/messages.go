package httpapi

import (
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
)

// historyResponse is the answer of GET /api/conversations/{id}/messages.
type historyResponse struct {
	Messages []parley.Message `json:"messages"`
	HasMore  bool             `json:"has_more"`
}

// history answers a page of a conversation's history, ascending by seq.
func (h *api) history(w http.ResponseWriter, r *http.Request, callerID string) error {
	q, err := historyQuery(r.URL.Query())
	if err != nil {
		return err
	}
	msgs, more, err := h.chat.History(r.Context(), callerID, r.PathValue("id"), q)
	if err != nil {
		return err
	}
	if msgs == nil {
		msgs = []parley.Message{}
	}
	h.writeJSON(w, r, http.StatusOK, historyResponse{Messages: msgs, HasMore: more})
	return nil
}

// historyQuery parses after_seq, before_seq and limit. The bounds must be
// non-negative integers and limit a positive one; a missing limit is 0,
// which the chat service takes as its default, so an explicit limit=0 must
// be refused here.
func historyQuery(v url.Values) (parley.HistoryQuery, error) {
	var q parley.HistoryQuery
	after, hasAfter, err := seqParam(v, "after_seq")
	if err != nil {
		return q, err
	}
	before, hasBefore, err := seqParam(v, "before_seq")
	if err != nil {
		return q, err
	}
	q.AfterSeq, q.HasAfter, q.BeforeSeq = after, hasAfter, before
	if hasBefore && before == 0 {
		// A zero bound means no bound to the store, but nothing is below
		// seq 0, as nothing is below seq 1, where every conversation starts.
		q.BeforeSeq = 1
	}
	if s, ok := param(v, "limit"); ok {
		n, err := strconv.ParseInt(s, 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange) && n > 0:
			// A huge limit is still "above 200": the service clamps it.
			n = math.MaxInt32
		case err != nil || n <= 0:
			return q, parley.Errorf(parley.CodeInvalidArgument, "limit must be a positive integer")
		}
		q.Limit = int(min(n, math.MaxInt32))
	}
	return q, nil
}

// seqParam parses the query parameter name as a non-negative seq, and says
// whether it was present.
func seqParam(v url.Values, name string) (int64, bool, error) {
	s, ok := param(v, name)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, true, parley.Errorf(parley.CodeInvalidArgument, "%s must be a non-negative integer", name)
	}
	return n, true, nil
}

// param returns the first value of the query parameter name and whether it
// was present at all; present but empty is a value ("").
func param(v url.Values, name string) (string, bool) {
	vs, ok := v[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// sendRequest is the body of POST /api/conversations/{id}/messages.
type sendRequest struct {
	ClientMessageID string             `json:"client_message_id"`
	Kind            parley.MessageKind `json:"kind"`
	Text            string             `json:"text"`
	MediaID         string             `json:"media_id"`
}

// send stores a message: 201 Message, or 200 with the original for a
// client_message_id the caller already used in the conversation.
func (h *api) send(w http.ResponseWriter, r *http.Request, callerID string) error {
	var req sendRequest
	if err := decodeJSON(w, r, h.messageBodyBytes, &req); err != nil {
		return err
	}
	msg, created, err := h.chat.Send(r.Context(), callerID, chat.SendParams{
		ConversationID:  r.PathValue("id"),
		ClientMessageID: req.ClientMessageID,
		Kind:            req.Kind,
		Text:            req.Text,
		MediaID:         req.MediaID,
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	h.writeJSON(w, r, status, msg)
	return nil
}

// receiptRequest is the body of POST /api/conversations/{id}/receipts. Seq
// is a pointer so that a missing seq is an error, not a receipt for 0.
type receiptRequest struct {
	Kind parley.ReceiptKind `json:"kind"`
	Seq  *int64             `json:"seq"`
}

// receipt moves the caller's delivered or read watermark forward: 204,
// also when it moves nothing.
func (h *api) receipt(w http.ResponseWriter, r *http.Request, callerID string) error {
	var req receiptRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	if req.Seq == nil {
		return parley.Errorf(parley.CodeInvalidArgument, "seq is required")
	}
	if err := h.chat.Receipt(r.Context(), callerID, r.PathValue("id"), req.Kind, *req.Seq, deviceOf(r)); err != nil {
		return err
	}
	noContent(w)
	return nil
}
