package parley

// Media is a file attached to a message (docs/protocol.md, "Media"): a
// photo, a video or any file, as clients see it. MIMEType is what the
// server found in the content, never the uploader's claim. Width and Height
// are set for images and videos whose size is known, DurationMS for videos
// whose length is known. URL and ThumbnailURL are short-lived signed URLs,
// made afresh each time the media is shown to a client (a browser cannot
// put a bearer token on an <img>); ThumbnailURL is nil without a thumbnail.
type Media struct {
	ID           string  `json:"id"`
	MIMEType     string  `json:"mime_type"`
	Size         int64   `json:"size"`
	Name         string  `json:"name"`
	Width        *int    `json:"width"`
	Height       *int    `json:"height"`
	DurationMS   *int64  `json:"duration_ms"`
	URL          string  `json:"url"`
	ThumbnailURL *string `json:"thumbnail_url"`
	// HasThumbnail says that a thumbnail is stored, for the signer that
	// fills ThumbnailURL.
	HasThumbnail bool `json:"-"`
}

// MediaState is where an upload is in its life.
type MediaState string

// Media states. An upload is uploading until its last byte arrived, then
// processing (its content inspected, an image cleaned and a thumbnail
// made), then ready to be attached to a message, or failed (refused
// content).
const (
	MediaUploading  MediaState = "uploading"
	MediaProcessing MediaState = "processing"
	MediaReady      MediaState = "ready"
	MediaFailed     MediaState = "failed"
)

// MediaFile is the server's record of an upload: the Media, who uploaded
// it, what it is, and where it is attached.
type MediaFile struct {
	Media
	UploaderID string
	State      MediaState
	// Kind is the message kind the content allows: KindImage, KindVideo
	// or KindFile.
	Kind MessageKind
	// ClaimedType is the Content-Type the uploader gave, kept for the
	// record only.
	ClaimedType string
	// ConversationID is the conversation of the message it is attached
	// to, empty until then; a media file is attached once.
	ConversationID string
	// Error says why processing failed.
	Error string
	// UploadRef is the tus store's id of an upload in progress (the media
	// id, or more in object storage); empty for one made in one request.
	UploadRef string
	CreatedAt Time
}

// KindAllows reports whether a message of kind k may carry media of kind
// content: an image message needs an image, a video message a video; a
// file message carries anything.
func KindAllows(k, content MessageKind) bool {
	switch k {
	case KindImage, KindVideo:
		return content == k
	case KindFile:
		return true
	}
	return false
}

// MediaSigner fills in the URLs of a Media about to be shown to a client:
// short-lived signed URLs, made afresh each time. Implementations are safe
// for concurrent use.
type MediaSigner interface {
	SignMedia(m *Media)
}

// SignedMessage returns m with the URLs of its media signed by s: m itself
// when it has no media (or s is nil), else a copy, so that a message shared
// by an event is never changed.
func SignedMessage(s MediaSigner, m *Message) *Message {
	if s == nil || m == nil || m.Media == nil {
		return m
	}
	c := *m
	media := *m.Media
	s.SignMedia(&media)
	c.Media = &media
	return &c
}

// SignMessages signs the media of msgs in place (a slice the caller owns).
func SignMessages(s MediaSigner, msgs []Message) {
	for i := range msgs {
		if msgs[i].Media != nil {
			msgs[i] = *SignedMessage(s, &msgs[i])
		}
	}
}

// SignConversation signs the media of c's last message, copying it.
func SignConversation(s MediaSigner, c *Conversation) {
	c.LastMessage = SignedMessage(s, c.LastMessage)
}
