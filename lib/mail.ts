// Account mail (invitations, password resets): the messages, and the one way they leave — SMTP at
// SMTP_URL, or without it .eml files in an outbox directory (embedded default; tests read them).
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";
import nodemailer from "nodemailer";

export type AccountMailKind = "invite" | "reset";

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

const esc = (v: string) => v.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The set-password page of the console for a token (the token travels in the fragment: never in logs). */
export function setPasswordLink(consoleUrl: string, token: string): string {
  return `${consoleUrl}/#/set-password?token=${encodeURIComponent(token)}`;
}

export function renderAccountMail(kind: AccountMailKind, o: { name: string; link: string; validMinutes: number; inviter?: string | null }): RenderedMail {
  const hours = o.validMinutes >= 120 ? `${Math.round(o.validMinutes / 60)} hours` : `${o.validMinutes} minutes`;
  const greeting = `Hello ${o.name},`;
  const lines =
    kind === "invite"
      ? [
          greeting,
          "",
          o.inviter ? `${o.inviter} invited you to VokeTag.` : "You have been invited to VokeTag.",
          "Choose your password to activate your account:",
          "",
          o.link,
          "",
          `The link works once and expires in ${hours}.`,
        ]
      : [
          greeting,
          "",
          "Someone (hopefully you) asked to reset your VokeTag password. Choose a new one here:",
          "",
          o.link,
          "",
          `The link works once and expires in ${hours}. If you did not ask for this, ignore this message: your password stays as it is.`,
        ];
  const subject = kind === "invite" ? "Your VokeTag account" : "Reset your VokeTag password";
  const html = lines
    .map((l) => (l === o.link ? `<p><a href="${esc(o.link)}">${kind === "invite" ? "Set my password" : "Reset my password"}</a></p>` : l ? `<p>${esc(l)}</p>` : ""))
    .join("\n");
  return { subject, text: lines.join("\n") + "\n", html };
}

export interface Mailer {
  send(msg: { to: string; subject: string; text: string; html?: string }): Promise<{ messageId: string; file: string | null }>;
  close(): void;
}

/** SMTP when smtpUrl is set; otherwise each message becomes `<outboxDir>/<time>-<id>.eml`. */
export function createMailer(cfg: { smtpUrl: string | null; from: string; outboxDir: string | null }): Mailer {
  const transport = cfg.smtpUrl
    ? nodemailer.createTransport(cfg.smtpUrl)
    : nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  return {
    async send(msg) {
      const info: any = await transport.sendMail({ from: cfg.from, ...msg });
      if (cfg.smtpUrl) return { messageId: info.messageId, file: null };
      if (!cfg.outboxDir) return { messageId: info.messageId, file: null };
      fs.mkdirSync(cfg.outboxDir, { recursive: true });
      const file = path.join(cfg.outboxDir, `${new Date().toISOString().replace(/[:.]/g, "-")}-${crypto.randomBytes(4).toString("hex")}.eml`);
      // Written under a temporary name and renamed: a reader never sees half a message.
      fs.writeFileSync(`${file}.tmp`, info.message, { mode: 0o600 });
      fs.renameSync(`${file}.tmp`, file);
      return { messageId: info.messageId, file };
    },
    close() {
      transport.close();
    },
  };
}

/** Decodes a quoted-printable body (soft line breaks and =XX escapes), as mail readers do. */
export function decodeQuotedPrintable(s: string): string {
  const bytes = s.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));
  return Buffer.from(bytes, "latin1").toString("utf8");
}
