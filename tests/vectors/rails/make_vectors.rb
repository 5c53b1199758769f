# frozen_string_literal: true

# Writes rails61_vectors.json: session cookies and CSRF tokens made by REAL Rails, for the
# Python tests of strangler.identity. Nothing here reimplements Rails' cookie or CSRF code: each
# variant boots a tiny Rails::Application in its own child process (an application is a
# singleton, and its config is read once at boot), drives it with Rack::MockRequest and keeps
# exactly what Rails put in Set-Cookie and in its pages.
#
#   ruby tests/vectors/rails/make_vectors.rb            # writes rails61_vectors.json beside it
#
# Every expected session is read back BY RAILS (a second request carrying the cookie renders
# session.to_hash), and every CSRF token is POSTed back to Rails, whose verdict is recorded.
#
# The one thing Rails 6.1 cannot do natively is derive keys with PBKDF2-SHA256 (the
# `key_generator_hash_digest_class` of Rails 7.0). For the sha256 variants the app's
# key_generator is replaced by a copy of Rails 7.0's KeyGenerator
# (activesupport/lib/active_support/key_generator.rb at v7.0.x: OpenSSL::PKCS5.pbkdf2_hmac with
# the digest class, 1000 iterations from railties' Application#key_generator); the cookie jar
# and MessageEncryptor that use the keys are still Rails 6.1's own.

require "json"
require "open3"
require "rbconfig"
require "digest"

SECRET_KEY_BASE = Digest::SHA512.hexdigest("strangler rails 6.1 vectors: current secret")
OLD_SECRET_KEY_BASE = Digest::SHA512.hexdigest("strangler rails 6.1 vectors: retired secret")
COOKIE_NAME = "_legacy_session"
# Devise's Warden key holds [record.to_key, record.authenticatable_salt]: the salt is the first
# 29 characters of the bcrypt hash.
WARDEN_SALT = "$2a$12$KfW3x5mZ1uQ8pQ0rS7tVbe"
HOST = "legacy.example"

BASE = {
  "cipher" => "aes-256-gcm", "serializer" => "json", "key_digest" => "sha1",
  "use_cookies_with_metadata" => true, "expire_after_s" => nil,
  "session_key" => COOKIE_NAME, "secret_key_base" => SECRET_KEY_BASE,
  "urlsafe_csrf_tokens" => true, "per_form_csrf_tokens" => true, "objects_in_session" => false,
}.freeze

VARIANTS = [
  ["gcm_json_sha1_meta", {}],
  ["gcm_marshal_sha1_meta", { "serializer" => "marshal", "urlsafe_csrf_tokens" => false }],
  ["gcm_hybrid_sha1_meta", { "serializer" => "hybrid" }],
  ["gcm_json_sha256_meta", { "key_digest" => "sha256" }],
  ["gcm_marshal_sha256_meta", { "serializer" => "marshal", "key_digest" => "sha256" }],
  ["gcm_json_sha1_nometa", { "use_cookies_with_metadata" => false, "per_form_csrf_tokens" => false }],
  ["gcm_marshal_sha1_nometa", { "serializer" => "marshal", "use_cookies_with_metadata" => false,
                                "urlsafe_csrf_tokens" => false }],
  ["gcm_json_sha1_meta_expiring", { "expire_after_s" => 3600 }],
  ["gcm_json_sha1_nometa_expiring", { "use_cookies_with_metadata" => false, "expire_after_s" => 3600 }],
  ["gcm_json_sha1_meta_other_name", { "session_key" => "_other_session" }],
  ["gcm_json_sha1_meta_old_secret", { "secret_key_base" => OLD_SECRET_KEY_BASE }],
  ["cbc_json_sha1_meta", { "cipher" => "aes-256-cbc" }],
  ["cbc_marshal_sha1_nometa", { "cipher" => "aes-256-cbc", "serializer" => "marshal",
                                "use_cookies_with_metadata" => false }],
  ["gcm_marshal_sha1_meta_objects", { "serializer" => "marshal", "objects_in_session" => true }],
].freeze

def run_variant(variant)
  # Production behaviour: no host allow-list, exceptions become status codes (422 for CSRF).
  ENV["RAILS_ENV"] = "production"
  require "rails"
  require "action_controller/railtie"

  app = Class.new(Rails::Application)
  Object.const_set(:VectorApp, app)
  app.configure do
    config.load_defaults 6.1
    config.eager_load = false
    config.logger = Logger.new(nil)
    config.hosts.clear
    config.secret_key_base = variant.fetch("secret_key_base")
    config.session_store :cookie_store, key: variant.fetch("session_key"),
                                        expire_after: variant.fetch("expire_after_s")
    config.action_dispatch.cookies_serializer = variant.fetch("serializer").to_sym
    config.action_dispatch.use_authenticated_cookie_encryption = variant.fetch("cipher") == "aes-256-gcm"
    config.action_dispatch.use_cookies_with_metadata = variant.fetch("use_cookies_with_metadata")
    config.action_controller.urlsafe_csrf_tokens = variant.fetch("urlsafe_csrf_tokens")
    config.action_controller.per_form_csrf_tokens = variant.fetch("per_form_csrf_tokens")
    config.action_controller.forgery_protection_origin_check = true
  end

  if variant.fetch("key_digest") == "sha256"
    # Rails 7.0's KeyGenerator#generate_key with hash_digest_class = OpenSSL::Digest::SHA256.
    sha256_generator = Class.new do
      def initialize(secret, iterations:)
        @secret = secret
        @iterations = iterations
      end

      def generate_key(salt, key_size = 64)
        OpenSSL::PKCS5.pbkdf2_hmac(@secret, salt, @iterations, key_size, OpenSSL::Digest::SHA256.new)
      end
    end
    app.define_method(:key_generator) do
      @sha256_key_generator ||= ActiveSupport::CachingKeyGenerator.new(
        sha256_generator.new(secret_key_base, iterations: 1000)
      )
    end
  end

  app.initialize!

  objects_in_session = variant.fetch("objects_in_session")
  sessions_controller = Class.new(ActionController::Base) do
    protect_from_forgery with: :exception

    define_method(:login) do
      session[:user_id] = 42
      session["warden.user.user.key"] = [[42], WARDEN_SALT]
      session[:display_name] = "Zoë Ñandú"
      if objects_in_session
        # What Marshal-serialized apps really carry: a Time and an indifferent-access hash.
        session[:last_seen_at] = Time.utc(2024, 1, 2, 3, 4, 5)
        session[:prefs] = ActiveSupport::HashWithIndifferentAccess.new(theme: "dark")
      end
      flash[:notice] = "Signed in"
      render json: {
        global: form_authenticity_token,
        per_form: form_authenticity_token(form_options: { action: "/projects", method: "post" }),
        meta_tags: view_context.csrf_meta_tags.to_s,
      }
    end

    define_method(:whoami) do
      render json: session.to_hash
    end
  end
  Object.const_set(:SessionsController, sessions_controller)
  projects_controller = Class.new(ActionController::Base) do
    protect_from_forgery with: :exception
    define_method(:create) { render json: { ok: true } }
  end
  Object.const_set(:ProjectsController, projects_controller)
  app.routes.draw do
    get "/login" => "sessions#login"
    get "/whoami" => "sessions#whoami"
    post "/projects" => "projects#create"
    post "/other" => "projects#create"
  end

  mock = Rack::MockRequest.new(app)
  env = { "HTTP_HOST" => HOST, "HTTPS" => "on" }
  login = mock.get("/login", env)
  raise "login failed: #{login.status} #{login.body}" unless login.status == 200

  key = variant.fetch("session_key")
  set_cookie = login.headers["Set-Cookie"].split("\n").find { |line| line.start_with?("#{key}=") }
  wire_value = set_cookie[/\A#{Regexp.escape(key)}=([^;]*)/, 1]
  cookie_header = "#{key}=#{wire_value}"
  tokens = JSON.parse(login.body)
  meta_token = tokens.fetch("meta_tags")[/name="csrf-token" content="([^"]*)"/, 1]

  whoami = mock.get("/whoami", env.merge("HTTP_COOKIE" => cookie_header))
  session = JSON.parse(whoami.body)
  raw_token = session.fetch("_csrf_token")

  post = lambda do |path, headers = {}, params = nil|
    options = env.merge("HTTP_COOKIE" => cookie_header).merge(headers)
    options[:params] = params if params
    mock.post(path, options).status
  end

  garbage = "not-a-token"
  verdicts = {
    "global_in_header" => post.call("/projects", "HTTP_X_CSRF_TOKEN" => tokens.fetch("global")),
    "global_in_form" => post.call("/projects", {}, { "authenticity_token" => tokens.fetch("global") }),
    "meta_tag_in_header" => post.call("/projects", "HTTP_X_CSRF_TOKEN" => meta_token),
    "per_form_on_its_path" => post.call("/projects", {}, { "authenticity_token" => tokens.fetch("per_form") }),
    "per_form_on_other_path" => post.call("/other", {}, { "authenticity_token" => tokens.fetch("per_form") }),
    "unmasked_raw_token" => post.call("/projects", "HTTP_X_CSRF_TOKEN" => raw_token),
    "missing_token" => post.call("/projects"),
    "garbage_token" => post.call("/projects", "HTTP_X_CSRF_TOKEN" => garbage),
    "same_origin" => post.call("/projects", "HTTP_X_CSRF_TOKEN" => tokens.fetch("global"),
                               "HTTP_ORIGIN" => "https://#{HOST}"),
    "foreign_origin" => post.call("/projects", "HTTP_X_CSRF_TOKEN" => tokens.fetch("global"),
                                  "HTTP_ORIGIN" => "https://evil.example"),
    "null_origin" => post.call("/projects", "HTTP_X_CSRF_TOKEN" => tokens.fetch("global"),
                               "HTTP_ORIGIN" => "null"),
  }

  {
    "id" => variant.fetch("id"),
    "settings" => variant.reject { |k, _| k == "id" },
    "generated_at" => Time.now.to_f,
    "cookie_name" => key,
    "cookie_value" => wire_value,
    "set_cookie" => set_cookie,
    "session_as_read_by_rails" => session,
    "csrf" => {
      "session_token" => raw_token,
      "global_token" => tokens.fetch("global"),
      "meta_tag_token" => meta_token,
      "per_form_token" => tokens.fetch("per_form"),
      "per_form_action" => "/projects",
      "per_form_method" => "post",
      "garbage_token" => garbage,
      "rails_status_by_case" => verdicts,
    },
  }
end

# ActionDispatch::Request#base_url for proxy headers, as Rails computes it (Rack 2.2 scheme,
# ActionDispatch::Http::URL host/port).
def base_url_cases
  require "action_dispatch"
  cases = [
    { "host" => "legacy.example", "https" => false },
    { "host" => "legacy.example", "https" => true },
    { "host" => "legacy.example:443", "https" => true },
    { "host" => "legacy.example:80", "https" => true },
    { "host" => "legacy.example:8080", "https" => false },
    { "host" => "internal:3000", "forwarded_host" => "shop.example", "forwarded_proto" => "https" },
    { "host" => "internal:3000", "forwarded_host" => "a.example, b.example", "forwarded_proto" => "https" },
    { "host" => "internal:3000", "forwarded_host" => "a.example,b.example:8443", "forwarded_proto" => "https" },
    { "host" => "internal:3000", "forwarded_proto" => "https, http" },
    { "host" => "internal:3000", "forwarded_proto" => "http, https" },
    { "host" => "internal:3000", "forwarded_proto" => "ftp" },
    { "host" => "internal", "forwarded_host" => "shop.example:443", "forwarded_proto" => "https" },
    { "host" => "internal", "forwarded_host" => "shop.example:80", "forwarded_proto" => "http" },
    { "host" => "[::1]:3000", "https" => false },
    { "host" => "internal", "forwarded_host" => "   ", "https" => false },
  ]
  cases.map do |c|
    env = { "rack.url_scheme" => c["https"] ? "https" : "http", "SERVER_NAME" => "fallback", "SERVER_PORT" => "80" }
    env["HTTPS"] = "on" if c["https"]
    env["HTTP_HOST"] = c["host"] if c["host"]
    env["HTTP_X_FORWARDED_HOST"] = c["forwarded_host"] if c["forwarded_host"]
    env["HTTP_X_FORWARDED_PROTO"] = c["forwarded_proto"] if c["forwarded_proto"]
    c.merge("base_url" => ActionDispatch::Request.new(env).base_url)
  end
end

def versions
  require "rails"
  require "rack"
  { "ruby" => RUBY_DESCRIPTION, "rails" => Rails.version, "rack" => Rack.release }
end

def main
  vectors = VARIANTS.map do |id, overrides|
    variant = BASE.merge(overrides).merge("id" => id)
    out, err, status = Open3.capture3(RbConfig.ruby, __FILE__, "--variant", JSON.generate(variant))
    raise "variant #{id} failed:\n#{err}" unless status.success?
    warn "made #{id}"
    JSON.parse(out)
  end
  document = {
    "about" => "Made by tests/vectors/rails/make_vectors.rb with real Rails; see README.md.",
    "versions" => versions,
    "secret_key_base" => SECRET_KEY_BASE,
    "old_secret_key_base" => OLD_SECRET_KEY_BASE,
    "warden_salt" => WARDEN_SALT,
    "host" => HOST,
    "vectors" => vectors,
    "base_url_cases" => base_url_cases,
  }
  path = File.join(__dir__, "rails61_vectors.json")
  File.write(path, JSON.pretty_generate(document) + "\n")
  puts "#{document["versions"].values.join(" | ")}"
  puts "wrote #{vectors.size} vectors to #{path}"
end

if ARGV[0] == "--variant"
  $stdout.write(JSON.generate(run_variant(JSON.parse(ARGV[1]))))
else
  main
end
