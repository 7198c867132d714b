// Who is calling: the gateway authenticates and puts the principal in ctx.meta; services read it here.
import { forbidden, unauthorized } from "./errors";

export interface Principal {
  type: "key" | "user";
  /** Key id or user id: the credential idempotency keys and audit entries are scoped by. */
  id: string;
  tenant_id: string | null;
  role: string | null;
  scopes: string[];
  email?: string;
}

export const PLATFORM_ROLES = ["admin", "operator", "auditor"] as const;
export const TENANT_ROLES = ["tenant_admin", "tenant_viewer"] as const;

export function principalOf(ctx: any): Principal {
  const p = ctx.meta?.principal as Principal | undefined;
  if (!p) throw unauthorized("credentials required");
  return p;
}

/** The tenant a tenant-scoped call acts for: its key's, or its tenant user's. */
export function tenantOf(ctx: any): string {
  const p = principalOf(ctx);
  if (!p.tenant_id) throw forbidden("this route acts for a tenant: use a tenant API key or a tenant user");
  return p.tenant_id;
}
