package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley"
)

// me answers the caller's own user.
func (h *api) me(w http.ResponseWriter, r *http.Request, callerID string) error {
	u, err := h.chat.User(r.Context(), callerID)
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusOK, u)
	return nil
}

// user answers any user by id.
func (h *api) user(w http.ResponseWriter, r *http.Request, _ string) error {
	u, err := h.chat.User(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusOK, u)
	return nil
}

// usersResponse is the answer of GET /api/users.
type usersResponse struct {
	Users []parley.User `json:"users"`
}

// searchUsers answers at most 20 users whose username starts with ?q=.
func (h *api) searchUsers(w http.ResponseWriter, r *http.Request, callerID string) error {
	users, err := h.chat.SearchUsers(r.Context(), callerID, r.URL.Query().Get("q"))
	if err != nil {
		return err
	}
	if users == nil {
		users = []parley.User{}
	}
	h.writeJSON(w, r, http.StatusOK, usersResponse{Users: users})
	return nil
}
