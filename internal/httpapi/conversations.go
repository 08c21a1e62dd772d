package httpapi

import (
	"net/http"

	"github.com/parley-chat/parley"
)

// createConversationRequest is the body of POST /api/conversations. Title
// is a pointer so that a direct conversation's missing or null title can be
// told from a group's empty one.
type createConversationRequest struct {
	Type      parley.ConversationType `json:"type"`
	Title     *string                 `json:"title"`
	MemberIDs []string                `json:"member_ids"`
}

// createConversation creates a direct conversation or a group: 201
// Conversation, or 200 with the existing direct conversation of the pair.
func (h *api) createConversation(w http.ResponseWriter, r *http.Request, callerID string) error {
	var req createConversationRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	conv, created, err := h.chat.CreateConversation(r.Context(), callerID, req.Type, req.Title, req.MemberIDs)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	h.writeJSON(w, r, status, conv)
	return nil
}

// conversationsResponse is the answer of GET /api/conversations.
type conversationsResponse struct {
	Conversations []parley.Conversation `json:"conversations"`
}

// conversations answers the caller's conversations, most recent activity
// first.
func (h *api) conversations(w http.ResponseWriter, r *http.Request, callerID string) error {
	convs, err := h.chat.Conversations(r.Context(), callerID)
	if err != nil {
		return err
	}
	if convs == nil {
		convs = []parley.Conversation{}
	}
	h.writeJSON(w, r, http.StatusOK, conversationsResponse{Conversations: convs})
	return nil
}

// conversation answers one of the caller's conversations; one the caller
// is not in is not_found.
func (h *api) conversation(w http.ResponseWriter, r *http.Request, callerID string) error {
	conv, err := h.chat.Conversation(r.Context(), callerID, r.PathValue("id"))
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusOK, conv)
	return nil
}

// addMemberRequest is the body of POST /api/conversations/{id}/members.
type addMemberRequest struct {
	UserID string `json:"user_id"`
}

// addMember adds a user to a group the caller administers: 200
// Conversation, also when the user was already a member.
func (h *api) addMember(w http.ResponseWriter, r *http.Request, callerID string) error {
	var req addMemberRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	if req.UserID == "" {
		return parley.Errorf(parley.CodeInvalidArgument, "user_id is required")
	}
	conv, err := h.chat.AddMember(r.Context(), callerID, r.PathValue("id"), req.UserID)
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusOK, conv)
	return nil
}

// removeMember removes a member from a group, by an admin or by the member
// leaving: 204.
func (h *api) removeMember(w http.ResponseWriter, r *http.Request, callerID string) error {
	if err := h.chat.RemoveMember(r.Context(), callerID, r.PathValue("id"), r.PathValue("user_id")); err != nil {
		return err
	}
	noContent(w)
	return nil
}
