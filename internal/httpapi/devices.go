package httpapi

import (
	"net/http"
	"strings"

	"github.com/parley-chat/parley"
)

// deviceTokenRequest is the body of POST /api/device-tokens.
type deviceTokenRequest struct {
	Platform    parley.Platform `json:"platform"`
	Token       string          `json:"token"`
	Environment string          `json:"environment"`
}

// deviceTokenResponse answers a registration. The contract fixes no body;
// this one tells the client the platform and environment in force.
type deviceTokenResponse struct {
	Platform    parley.Platform `json:"platform"`
	Environment string          `json:"environment,omitempty"`
}

// registerDeviceToken registers a push token to the caller: 201, or 200 if
// the caller had it already. A token of another user moves to the caller.
func (h *api) registerDeviceToken(w http.ResponseWriter, r *http.Request, callerID string) error {
	var req deviceTokenRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	created, err := h.chat.RegisterDeviceToken(r.Context(), callerID, req.Platform, req.Token, req.Environment, deviceOf(r))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	resp := deviceTokenResponse{Platform: req.Platform}
	if req.Platform == parley.PlatformIOS {
		resp.Environment = req.Environment
	}
	h.writeJSON(w, r, status, resp)
	return nil
}

// vapidPublicKey answers the key a browser needs for
// pushManager.subscribe, or 404 when Web Push is off.
func (h *api) vapidPublicKey(w http.ResponseWriter, r *http.Request, _ string) error {
	if h.vapid == "" {
		return parley.Errorf(parley.CodeNotFound, "Web Push is not enabled on this server")
	}
	h.writeJSON(w, r, http.StatusOK, struct {
		PublicKey string `json:"public_key"`
	}{h.vapid})
	return nil
}

// deleteDeviceToken deletes one of the caller's push tokens: 204, also for
// an unknown or foreign token, which changes nothing. The mux has already
// decoded the path, so an encoded "/" in a web token arrives as "/".
func (h *api) deleteDeviceToken(w http.ResponseWriter, r *http.Request, callerID string) error {
	token := r.PathValue("token")
	if strings.TrimSpace(token) == "" {
		return parley.Errorf(parley.CodeInvalidArgument, "the path must end with the URL-encoded token")
	}
	if err := h.chat.DeleteDeviceToken(r.Context(), callerID, token); err != nil {
		return err
	}
	noContent(w)
	return nil
}
