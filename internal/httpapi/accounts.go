package httpapi

import (
	"net/http"
)

// registerRequest is the body of POST /api/auth/register.
type registerRequest struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name"`
}

// register creates an account and logs it in: 201 Tokens.
func (h *api) register(w http.ResponseWriter, r *http.Request) error {
	var req registerRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	toks, err := h.auth.Register(r.Context(), req.Username, req.Password, req.DisplayName)
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusCreated, toks)
	return nil
}

// loginRequest is the body of POST /api/auth/login.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// login starts a new token family: 200 Tokens. A wrong password and an
// unknown user get the same 401 from the auth service.
func (h *api) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	toks, err := h.auth.Login(r.Context(), req.Username, req.Password)
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusOK, toks)
	return nil
}

// refreshRequest is the body of POST /api/auth/refresh and /logout.
type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// refresh rotates a refresh token into a new pair: 200 Tokens.
func (h *api) refresh(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	toks, err := h.auth.Refresh(r.Context(), req.RefreshToken)
	if err != nil {
		return err
	}
	h.writeJSON(w, r, http.StatusOK, toks)
	return nil
}

// logout revokes the family of a refresh token: 204, also for a token that
// is unknown, so that logging out twice is harmless.
// deleteAccountRequest is the body of DELETE /api/users/me.
type deleteAccountRequest struct {
	Password string `json:"password"`
}

// deleteAccount deletes the caller's account, once they gave its password
// again: 204, and every socket of theirs closes with 4003.
func (h *api) deleteAccount(w http.ResponseWriter, r *http.Request, callerID string) error {
	var req deleteAccountRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	if err := h.auth.DeleteAccount(r.Context(), callerID, req.Password); err != nil {
		return err
	}
	noContent(w)
	return nil
}

func (h *api) logout(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		return err
	}
	if err := h.auth.Logout(r.Context(), req.RefreshToken); err != nil {
		return err
	}
	noContent(w)
	return nil
}
