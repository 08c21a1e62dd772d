package tui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/client"
)

// directoryFile is the file of the profile folder that remembers user
// names. The SDK's store knows members by id only; names are what a
// person types and reads, and they must work offline too.
const directoryFile = "users.json"

// Directory maps user ids to usernames and back, for showing names and
// for finding a direct conversation by the other user's username. What it
// learns from the server it remembers in the profile folder, so that
// names show and resolve offline. It is safe for concurrent use.
type Directory struct {
	c    *client.Client
	path string

	mu    sync.Mutex             // guards users
	users map[string]parley.User // by id
}

// OpenDirectory loads the directory of the profile folder dir (empty if
// it has none yet); lookups that miss go to the server through c.
func OpenDirectory(dir string, c *client.Client) (*Directory, error) {
	d := &Directory{c: c, path: filepath.Join(dir, directoryFile), users: map[string]parley.User{}}
	b, err := os.ReadFile(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read user directory: %w", err)
	}
	var users []parley.User
	if err := json.Unmarshal(b, &users); err != nil {
		// A cache that cannot be read is rebuilt from the server.
		return d, nil
	}
	for _, u := range users {
		d.users[u.ID] = u
	}
	return d, nil
}

// ForgetDirectory deletes the directory of a profile folder (on logout).
func ForgetDirectory(dir string) error {
	err := os.Remove(filepath.Join(dir, directoryFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete user directory: %w", err)
	}
	return nil
}

// Name returns the username of a user id, if the directory knows it. The
// logged-in user is always known.
func (d *Directory) Name(id string) (string, bool) {
	if me, ok := d.c.User(); ok && me.ID == id {
		return me.Username, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.users[id]
	return u.Username, ok
}

// Label returns a name to show for a user id: the username, or a short
// form of the id while the name is unknown.
func (d *Directory) Label(id string) string {
	if name, ok := d.Name(id); ok {
		return name
	}
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

// byName returns the known user with a username, if any.
func (d *Directory) byName(name string) (parley.User, bool) {
	if me, ok := d.c.User(); ok && me.Username == name {
		return me, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range d.users {
		if u.Username == name {
			return u, true
		}
	}
	return parley.User{}, false
}

// Lookup returns a user given by username (with or without @) or id,
// from the directory if it knows them, else from the server, and then
// remembers them.
func (d *Directory) Lookup(ctx context.Context, who string) (parley.User, error) {
	who = strings.TrimSpace(who)
	name := strings.ToLower(strings.TrimPrefix(who, "@"))
	if u, ok := d.byName(name); ok {
		return u, nil
	}
	d.mu.Lock()
	u, ok := d.users[who]
	d.mu.Unlock()
	if ok {
		return u, nil
	}
	u, err := d.c.LookupUser(ctx, who)
	if err != nil {
		return parley.User{}, err
	}
	return u, d.Remember(u)
}

// Remember adds users to the directory and saves it.
func (d *Directory) Remember(users ...parley.User) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := false
	for _, u := range users {
		if old, ok := d.users[u.ID]; !ok || old.Username != u.Username || old.DisplayName != u.DisplayName {
			d.users[u.ID] = u
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return d.saveLocked()
}

// saveLocked writes the file atomically (temporary file, rename), so that
// two parley processes on one profile never leave half a file; the last
// writer wins, which is fine for a cache. d.mu must be held.
func (d *Directory) saveLocked() error {
	list := make([]parley.User, 0, len(d.users))
	for _, u := range d.users {
		list = append(list, u)
	}
	b, err := json.Marshal(list)
	if err != nil {
		return fmt.Errorf("save user directory: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(d.path), ".users-*")
	if err != nil {
		return fmt.Errorf("save user directory: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename there is nothing to remove
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save user directory: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save user directory: %w", err)
	}
	if err := os.Rename(f.Name(), d.path); err != nil {
		return fmt.Errorf("save user directory: %w", err)
	}
	return nil
}

// Unknown returns the member ids of convs whose names the directory does
// not know yet, each once.
func (d *Directory) Unknown(convs ...client.Conversation) []string {
	seen := map[string]bool{}
	var ids []string
	for _, conv := range convs {
		for _, m := range conv.Members {
			if seen[m.UserID] {
				continue
			}
			seen[m.UserID] = true
			if _, ok := d.Name(m.UserID); !ok {
				ids = append(ids, m.UserID)
			}
		}
	}
	return ids
}

// Learn looks up the names of the given user ids on the server and
// remembers them. It stops at the first failure (offline, say): what it
// learned so far is kept.
func (d *Directory) Learn(ctx context.Context, ids []string) error {
	for _, id := range ids {
		if _, err := d.Lookup(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// Title returns what to call a conversation: a group's title, or the
// other member's username for a direct one.
func (d *Directory) Title(conv client.Conversation) string {
	if conv.Type == parley.Group {
		if conv.Title != nil && *conv.Title != "" {
			return *conv.Title
		}
		return "group"
	}
	me, _ := d.c.User()
	for _, m := range conv.Members {
		if m.UserID != me.ID {
			return d.Label(m.UserID)
		}
	}
	return me.Username
}

// Conversation finds the conversation that arg names: a conversation id,
// or for a direct conversation the other user's username (with or without
// @) or user id. The local store is asked first, so that a known
// conversation resolves offline. A direct conversation the store does not
// know is looked up on the server, and created there if there is none
// yet (a direct conversation is unique per pair of users, so this never
// makes a second one).
func (d *Directory) Conversation(ctx context.Context, arg string) (client.Conversation, error) {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return client.Conversation{}, parley.Errorf(parley.CodeInvalidArgument, "no conversation given")
	}
	if conv, err := d.c.Conversation(ctx, arg); err == nil {
		return conv, nil
	}
	if conv, ok, err := d.localDirect(ctx, arg); err != nil || ok {
		return conv, err
	}
	// Not known here: ask the server. A conversation id may be one this
	// profile has not synced yet.
	if _, err := d.c.FetchConversations(ctx); err != nil {
		if parley.ErrorCode(err) == parley.CodeUnavailable {
			return client.Conversation{}, fmt.Errorf("%q is not a conversation known on this device, and the server is unreachable to look it up: %w", arg, err)
		}
		return client.Conversation{}, fmt.Errorf("find conversation %q: %w", arg, err)
	}
	if conv, err := d.c.Conversation(ctx, arg); err == nil {
		return conv, nil
	}
	u, err := d.Lookup(ctx, arg)
	if err != nil {
		if parley.ErrorCode(err) == parley.CodeNotFound {
			return client.Conversation{}, parley.Errorf(parley.CodeNotFound, "no conversation or user %q", arg)
		}
		return client.Conversation{}, fmt.Errorf("find conversation %q: %w", arg, err)
	}
	conv, err := d.c.CreateDirect(ctx, u.ID)
	if err != nil {
		return client.Conversation{}, fmt.Errorf("open conversation with %s: %w", u.Username, err)
	}
	return conv, nil
}

// localDirect finds a direct conversation in the local store whose other
// member is the user that who names, as far as the directory knows them.
func (d *Directory) localDirect(ctx context.Context, who string) (client.Conversation, bool, error) {
	name := strings.ToLower(strings.TrimPrefix(who, "@"))
	u, ok := d.byName(name)
	if !ok {
		d.mu.Lock()
		u, ok = d.users[who]
		d.mu.Unlock()
	}
	if !ok {
		return client.Conversation{}, false, nil
	}
	convs, err := d.c.Conversations(ctx)
	if err != nil {
		return client.Conversation{}, false, err
	}
	me, _ := d.c.User()
	for _, conv := range convs {
		if conv.Type != parley.Direct {
			continue
		}
		other := me.ID // a conversation with oneself has no one else
		for _, m := range conv.Members {
			if m.UserID != me.ID {
				other = m.UserID
			}
		}
		if other == u.ID {
			return conv, true, nil
		}
	}
	return client.Conversation{}, false, nil
}
