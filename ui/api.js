// Talks to heapwatchd's JSON API (docs/api.md). Adds the bearer token kept in
// sessionStorage; on 401 asks the user for one (through `askToken`) and retries.

const kTokenKey = 'heapwatch.token';

export class ApiError extends Error {
  /** status 0 means the collector could not be reached at all. */
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

export class Api {
  /**
   * askToken(reason) -> Promise<string|null>: shows the token prompt; null when
   * the user cancels. Concurrent 401s share one prompt.
   */
  constructor(askToken) {
    this.askToken_ = askToken;
    this.pendingPrompt_ = null;
  }

  get token() {
    return sessionStorage.getItem(kTokenKey) || '';
  }

  getJson(path, signal) {
    return this.request_('GET', path, signal);
  }

  postJson(path) {
    return this.request_('POST', path);
  }

  /** Raw text GET (to skip re-layout when a profile did not change). */
  getText(path, signal) {
    return this.request_('GET', path, signal, true);
  }

  async request_(method, path, signal, asText = false, attempt = 0) {
    const headers = { Accept: 'application/json' };
    const token = this.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    let resp;
    try {
      resp = await fetch(path, { method, headers, signal, cache: 'no-store' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'cannot reach heapwatchd', path);
    }
    if (resp.status === 401 && attempt < 3) {
      const reason = token ? 'The token was rejected. Enter the collector\'s access token.'
        : 'heapwatchd requires an access token.';
      const entered = await this.promptOnce_(reason);
      if (entered === null) throw new ApiError(401, 'access token required', path);
      return this.request_(method, path, signal, asText, attempt + 1);
    }
    const text = await resp.text();
    if (!resp.ok) {
      let message = `HTTP ${resp.status}`;
      try {
        const body = JSON.parse(text);
        if (body && body.error) message = `${message}: ${body.error}`;
      } catch {
        if (text) message = `${message}: ${text.slice(0, 200)}`;
      }
      throw new ApiError(resp.status, message, path);
    }
    if (asText) return text;
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError(resp.status, 'malformed JSON from heapwatchd', path);
    }
  }

  promptOnce_(reason) {
    if (!this.pendingPrompt_) {
      this.pendingPrompt_ = this.askToken_(reason).then((token) => {
        this.pendingPrompt_ = null;
        if (token !== null) sessionStorage.setItem(kTokenKey, token.trim());
        return token;
      });
    }
    return this.pendingPrompt_;
  }
}
