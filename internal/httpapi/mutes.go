package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley"
)

// muteBody is the body of PUT /api/conversations/{id}/mute and the answer
// of GET: until is a time, or null (or missing) for ever.
type muteBody struct {
	Until *parley.Time `json:"until"`
}

// muteResponse answers GET /api/conversations/{id}/mute.
type muteResponse struct {
	Muted bool         `json:"muted"`
	Until *parley.Time `json:"until"`
}

// putMute mutes a conversation for the caller: 204. A conversation the
// caller is not in is not_found.
func (h *api) putMute(w http.ResponseWriter, r *http.Request, callerID string) error {
	var req muteBody
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	if req.Until != nil && req.Until.IsZero() {
		req.Until = nil // "until": null
	}
	if err := h.chat.Mute(r.Context(), callerID, r.PathValue("id"), req.Until); err != nil {
		return err
	}
	noContent(w)
	return nil
}

// deleteMute unmutes a conversation for the caller: 204, also when it was
// not muted.
func (h *api) deleteMute(w http.ResponseWriter, r *http.Request, callerID string) error {
	if err := h.chat.Unmute(r.Context(), callerID, r.PathValue("id")); err != nil {
		return err
	}
	noContent(w)
	return nil
}

// getMute answers whether the caller muted a conversation, and until when.
func (h *api) getMute(w http.ResponseWriter, r *http.Request, callerID string) error {
	m, err := h.chat.MuteOf(r.Context(), callerID, r.PathValue("id"))
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusOK, muteResponse{Muted: m.Muted, Until: m.Until})
	return nil
}
